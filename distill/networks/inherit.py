"""Start a student from its teacher's own weights (`distill train --init-student teacher`).

Every tensor of the student's state dict is copied from the teacher's tensor of the same name and
shape; a student tensor without one is an error, so nothing starts half-random unnoticed. A
`resnet10` student (one block per stage) under a `resnet18` or `resnet34` teacher of this project
takes the stem, the first block of each stage and the whole decoder: the teacher with the later
blocks of each stage left out. A residual network keeps most of its function when blocks inside a
stage are dropped (Veit et al. 2016, "Residual networks behave like ensembles of relatively shallow
networks"); distillation then trains what the drop changed. No data is needed for the copy. A
`resnet10-slim` student takes the same blocks with half their channels, selected (distill/networks/slim.py).
"""

from __future__ import annotations

from torch import nn

from distill.networks.slim import hint_channels, is_slim, select_channels, slice_teacher
from simgen.options import ConfigError


def inherit_weights(student: nn.Module, teacher: nn.Module) -> int:
    """Copy the teacher's tensors into the student by name and shape; returns how many were copied.
    ConfigError when the teacher is not a depth model of this project (its weights and output range
    are then unknown), when the two output different depth ranges, or when a student tensor has no match."""
    if not all(hasattr(m, end) for m in (student, teacher) for end in ("min_depth", "max_depth")):
        raise ConfigError(f"--init-student teacher needs a teacher that is a depth model of this project (a "
                          f"checkpoint of distill fit-teacher or train), not a {type(teacher).__name__}: an exported, "
                          "TorchScript or ONNX teacher does not carry its layers' names and output range; use "
                          "--init-student random")
    if (student.min_depth, student.max_depth) != (teacher.min_depth, teacher.max_depth):
        raise ConfigError(f"--init-student teacher: the teacher outputs depth in [{teacher.min_depth:g}, "
                          f"{teacher.max_depth:g}] m, the student in [{student.min_depth:g}, {student.max_depth:g}]; "
                          f"give --min-depth {teacher.min_depth:g} --max-depth {teacher.max_depth:g}")
    theirs, mine = teacher.state_dict(), student.state_dict()
    if is_slim(student, teacher):  # a narrower student: the teacher's tensors sliced to the channels it keeps
        widths = tuple(student.encoder.channels[1:])
        decoder = tuple(block.conv[2].num_features for block in student.decoder.blocks)
        groups = select_channels(theirs, widths, decoder)
        theirs = slice_teacher(theirs, groups)
        student.hint_channels = hint_channels(groups)  # what its feature hints compare (distill/distiller.py)
    unmatched = [k for k, v in mine.items() if k not in theirs or tuple(theirs[k].shape) != tuple(v.shape)]
    if unmatched:
        raise ConfigError(f"--init-student teacher: {len(unmatched)} of the student's {len(mine)} tensors have no "
                          f"tensor of the same name and shape in the teacher (first: {', '.join(unmatched[:3])}); "
                          "a resnet10 student starts from a resnet18 or resnet34 teacher of this project")
    student.load_state_dict({k: theirs[k].detach().clone() for k in mine})
    return len(mine)


def hinted_modules(model: nn.Module) -> tuple[nn.Module, ...]:
    """The modules whose outputs the feature hints compare: the encoder (its list of maps)."""
    return (model.encoder,)


def require_matching_features(student: nn.Module, teacher: nn.Module) -> None:
    """ConfigError unless both are depth models of this project whose encoders return feature maps
    of the same channels at the same strides (resnet10/18/34 share them), which the feature term of
    `distill train --w-feature` compares one to one."""
    mine, theirs = (getattr(getattr(m, "encoder", None), "channels", None) for m in (student, teacher))
    if theirs is None:
        raise ConfigError(f"--w-feature compares the student's encoder features with the teacher's: it needs a teacher "
                          f"that is a depth model of this project, not a {type(teacher).__name__} (an exported, "
                          "TorchScript or ONNX teacher does not expose its encoder); use --w-feature 0")
    if mine != theirs and not hasattr(student, "hint_channels"):  # a slim student compares its selected channels
        raise ConfigError(f"--w-feature: the student's encoder features have {mine} channels, the teacher's {theirs}; "
                          "a resnet10/18/34 student matches a resnet18/34 teacher of this project, and a resnet10-slim one started "
                          "from it (--init-student teacher); or use --w-feature 0")
