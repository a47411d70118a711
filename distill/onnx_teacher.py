"""Teachers saved as ONNX (`model.onnx`), run by onnxruntime.

onnxruntime computes no gradients, so the transformation network, whose loss needs gradients
through the teacher, cannot train against an ONNX teacher: such a teacher drives plain KD (with
object-wise mixing). For the full method, export the PyTorch model with torch.export (.pt2).
Converting the ONNX graph back to torch would keep its BatchNormalization nodes, but the
maintained converter on PyPI (onnx2torch 1.5) requires torchvision, which has no CPU build for the
pinned torch: installing it replaces torch with a CUDA build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from simgen.options import Size

NO_GRADIENT = ("an ONNX teacher runs in onnxruntime, which gives no gradients back to the transformation network, "
               "so its BatchNorm-statistics loss cannot train; plain KD (with object-wise mixing) works. For the full "
               "method export the PyTorch model with torch.export (.pt2; see docs/distill.md)")


class OnnxError(Exception):
    """An ONNX file that cannot serve as a teacher; the message says why."""


def is_onnx(path: str | Path) -> bool:
    """An ONNX model file: by its suffix, or by parsing as an ONNX ModelProto with a graph."""
    if Path(path).suffix.lower() == ".onnx":
        return True
    try:
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
        return len(model.graph.node) > 0
    except Exception:
        return False


class OnnxModel(nn.Module):
    """An onnxruntime session as a module: float32 B x 3 x H x W in, the model's outputs out (a
    tensor, or a dict by output name when it has several). A model exported for a fixed batch is
    run one image at a time. `threads`: onnxruntime's intra-op threads (0: its default)."""

    def __init__(self, path: str | Path, threads: int = 0):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxError("running an ONNX model needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise OnnxError(f"--teacher {path}: not a loadable ONNX model ({type(e).__name__}: {e})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = ", ".join(str(i.shape) for i in inputs)
            raise OnnxError(f"--teacher {path}: the model takes inputs {shapes}; a depth teacher takes one image "
                            "batch B x 3 x H x W")
        self.input_name = inputs[0].name
        batch, _, h, w = inputs[0].shape
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.size = Size(w, h) if isinstance(h, int) and isinstance(w, int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, image: torch.Tensor):
        x = image.detach().float().cpu().numpy()
        if self.fixed_batch == 1 and len(x) > 1:
            runs = [self.session.run(None, {self.input_name: x[i:i + 1]}) for i in range(len(x))]
            results = [np.concatenate(parts) for parts in zip(*runs)]
        else:
            results = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        tensors = [torch.from_numpy(np.asarray(r)).to(image.device) for r in results]
        return tensors[0] if len(tensors) == 1 else dict(zip(self.output_names, tensors))


def load_onnx(path: str | Path) -> tuple[OnnxModel, Size | None]:
    """The model and the WIDTHxHEIGHT it was exported at (None when its height and width are dynamic)."""
    model = OnnxModel(path)
    return model, model.size
