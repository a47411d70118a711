"""Teachers saved with torch.export (`.pt2`): loading, their input size, and their batch norms.

An exported program has no BatchNorm modules to hook: its batch norms are aten operators in a
graph. Before each one, `probe_batch_norms` inserts a `BatchNormInput` module (an identity that
carries the operator's running statistics), which the BN-statistics loss hooks like a BatchNorm
layer; gradients flow through the graph to the transformation network as through any model.

Export a teacher so that it takes any batch size:

    batch = torch.export.Dim("batch")
    program = torch.export.export(model.eval(), (torch.rand(2, 3, H, W),), dynamic_shapes=({0: batch},))
    torch.export.save(program, "teacher.pt2")
"""

from __future__ import annotations

import operator
import zipfile
from pathlib import Path

import torch
from torch import nn

from distill.layers import BatchNormInput
from simgen.options import Size

# aten operators of batch norm in inference; arguments 3 and 4 are running_mean and running_var
BATCH_NORM_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default",
                  "aten.native_batch_norm.default", "aten.cudnn_batch_norm.default")
EXPORT_HINT = ("re-export it with a dynamic batch: torch.export.export(model.eval(), (torch.rand(2, 3, H, W),), "
               "dynamic_shapes=({0: torch.export.Dim('batch')},))")


class ExportError(Exception):
    """An exported program that cannot serve as a teacher; the message says why and how to fix it."""


def is_exported_program(path: str | Path) -> bool:
    """torch.export.save archives (PT2 archive format: an `archive_format` entry reading "pt2";
    older releases: a serialized_exported_program.json)."""
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith("serialized_exported_program.json"):
                    return True
                if name.endswith("/archive_format") and z.read(name).strip() == b"pt2":
                    return True
    except (zipfile.BadZipFile, OSError):
        return False
    return False


class ExportedModel(nn.Module):
    """An exported program's module, in the project's nn.Module world. Exported modules refuse
    train()/eval(); their batch norms are fixed to inference anyway, so the mode is only recorded."""

    def __init__(self, graph_module: nn.Module):
        super().__init__()
        self.program = graph_module

    def train(self, mode: bool = True) -> "ExportedModel":
        self.training = mode
        return self

    def forward(self, image: torch.Tensor):
        return self.program(image)


def load_exported(path: str | Path) -> tuple[ExportedModel, Size]:
    """The program as a module with batch-norm probes, and the WIDTHxHEIGHT it was exported at."""
    try:
        graph_module = torch.export.load(str(path)).module()
    except Exception as e:
        raise ExportError(f"--teacher {path}: not a loadable torch.export program ({type(e).__name__}: {e})") from None
    placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1 or "val" not in placeholders[0].meta:
        raise ExportError(f"--teacher {path}: the program takes {len(placeholders)} inputs; a depth teacher takes one "
                          "image batch B x 3 x H x W")
    shape = placeholders[0].meta["val"].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise ExportError(f"--teacher {path}: input shape {tuple(shape)}; expected B x 3 x H x W with fixed H and W")
    if isinstance(shape[0], int):
        raise ExportError(f"--teacher {path}: exported with a fixed batch of {shape[0]}; {EXPORT_HINT}")
    probe_batch_norms(graph_module)
    return ExportedModel(graph_module), Size(int(shape[3]), int(shape[2]))


def probe_batch_norms(graph_module: torch.fx.GraphModule) -> int:
    """Insert a BatchNormInput before every batch-norm operator of the graph; returns how many."""
    count = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or str(node.target) not in BATCH_NORM_OPS:
            continue
        stats = node.args[3:5]
        if not all(getattr(a, "op", None) == "get_attr" for a in stats):
            continue  # statistics not stored in the program (training-mode batch norm): nothing to compare with
        mean, var = (operator.attrgetter(a.target)(graph_module) for a in stats)
        name = f"bn_input_{count}"
        graph_module.add_submodule(name, BatchNormInput(mean, var))
        with graph_module.graph.inserting_before(node):
            probed = graph_module.graph.call_module(name, (node.args[0],))
        node.update_arg(0, probed)
        count += 1
    graph_module.graph.lint()
    graph_module.recompile()
    return count
