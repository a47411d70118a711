"""Command-line options generated from config dataclasses: each default and its help live once,
on the dataclass field; `simgen` and `distill` build their flags from them.

    @dataclass
    class TrainConfig:
        lr: float = option(1e-3, "student learning rate")

    add_options(parser, TrainConfig)                # --lr, help "student learning rate (default 0.001)"
    cfg = TrainConfig(**given(args, TrainConfig))  # only the flags the user typed; the rest: defaults

Every generated flag has the default argparse.SUPPRESS, so `given` returns exactly what was typed
and a config file (`--config FILE`) can be overridden flag by flag. The dataclass stays the one
place that says what a default is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A bad option or config value; the message says what is wrong and how to fix it."""


def option(default: Any = _MISSING, help: str = "", *, parse: Callable[[str], Any] | None = None,
           choices: tuple | list | None = None, flag: str | None = None, aliases: tuple[str, ...] = (),
           repeat: bool = False, cli: bool = True, metavar: str | None = None, shown: str | None = None) -> Any:
    """A dataclass field with its command-line description.

    parse: turns the typed text into the value (default: from the default's type; bool is on|off);
    flag: the flag if not --field-name; aliases: other accepted flags; repeat: the flag may be given
    several times and collects a list; cli=False: API and config files only; shown: the default as
    the help text shows it."""
    meta = {"help": help, "parse": parse, "choices": choices, "flag": flag, "aliases": aliases, "repeat": repeat,
            "cli": cli, "metavar": metavar, "shown": shown}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    if callable(default) and not isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Size(NamedTuple):
    """An image size. The project's one convention: width first, written WxH (320x240), in every
    flag, config field, checkpoint and doc; `.hw` gives torch's (height, width) order."""

    width: int
    height: int

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_size(text: str) -> Size:
    """'320x240' -> Size(width=320, height=240)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT (e.g. 320x240), got {text!r}")
    return Size(int(m.group(1)), int(m.group(2)))


def as_size(value: Any) -> Size:
    """A Size from a Size, a [width, height] list (config files, checkpoints) or 'WxH' text."""
    if isinstance(value, str):
        return parse_size(value)
    width, height = value
    return Size(int(width), int(height))


def swapped_hint(size: Size, expected: Size | None) -> str:
    """' (did you mean HxW?)' when `size` is `expected` with width and height swapped, else ''."""
    if expected is not None and size != expected and (size.height, size.width) == tuple(expected):
        return f"; sizes are WIDTHxHEIGHT: did you mean {expected}?"
    return ""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def png_path(text: str) -> str:
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"must be a .png file name, got {text!r}")
    return text


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"must be on or off, got {text!r}")
    return text == "on"


def auto_on_off(text: str | bool) -> str:
    """auto | on | off (a bool from an older config reads as on | off)."""
    if isinstance(text, bool):
        return "on" if text else "off"
    if text not in ("auto", "on", "off"):
        raise ConfigError(f"must be auto, on or off, got {text!r}")
    return text


def _default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return _MISSING


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Size):
        return str(value)
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) if value else "none"
    return "none" if value is None else str(value)


def flag_name(f: dataclasses.Field, prefix: str = "") -> str:
    return f.metadata.get("flag") or "--" + prefix + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser | Any, cls: type, prefix: str = "", skip: tuple[str, ...] = (),
                required: tuple[str, ...] = (), required_note: str = "required") -> None:
    """One flag per field of `cls` (see `option`). Fields in `required` are marked so in the help;
    the caller checks them (after merging a --config file, where there is one)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or not meta.get("cli", True):
            continue
        default = _default(f)
        parse = meta.get("parse")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": prefix.replace("-", "_") + f.name}
        if parse is None and isinstance(default, bool):
            parse = on_off
            kwargs.update(nargs="?", const=True, metavar="on|off")  # `--flag` alone means on
        elif parse is auto_on_off:
            kwargs.update(nargs="?", const="on", metavar="auto|on|off")
        elif parse is None and default not in (None, _MISSING) and not isinstance(default, (list, tuple, dict)):
            parse = type(default)
        if parse is not None:
            kwargs["type"] = typed(parse)
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        elif parse is parse_size:
            kwargs["metavar"] = "WxH"
        elif "metavar" not in kwargs and not meta.get("choices"):
            kwargs["metavar"] = f.name.upper()
        if meta.get("repeat"):
            kwargs["action"] = "append"
        text = meta.get("help", "")
        if f.name in required:
            text += f" ({required_note})"
        elif default is not _MISSING:
            text += f" (default {meta.get('shown') or _shown(default)})"
        parser.add_argument(flag_name(f, prefix), *meta.get("aliases", ()), help=text, **kwargs)


def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows the message of an ArgumentTypeError only: keep ours for ConfigError too."""
    def checked(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    checked.__name__ = getattr(parse, "__name__", "value")
    return checked


def given(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of `cls` whose flags were typed, by field name."""
    dest = prefix.replace("-", "_")
    return {f.name: getattr(args, dest + f.name) for f in dataclasses.fields(cls) if hasattr(args, dest + f.name)}


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """The fields of a config written by a run (JSON); unknown keys are an error naming them."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--config {path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--config {path}: not a readable JSON config ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of {cls.__name__} fields")
    unknown = sorted(set(data) - field_names(cls))
    if unknown:
        raise ConfigError(f"--config {path}: unknown fields {', '.join(unknown)} (not in {cls.__name__})")
    return data
