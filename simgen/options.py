"""Command-line options generated from config dataclasses: each default and its help live once,
on the dataclass field; `simgen` and `distill` build their click options from them.

    @dataclass
    class TrainConfig:
        lr: float = option(1e-3, "student learning rate")

    @click.command()
    @click_options(TrainConfig)                     # --lr, help "student learning rate (default 0.001)"
    def train(**_):
        cfg = TrainConfig(**given(TrainConfig))    # only the flags the user typed; the rest: defaults

No generated option has a click default, so `given` returns exactly what was typed and a config
file (`--config FILE`) can be overridden flag by flag. The dataclass stays the one place that says
what a default is. Also here: ConfigError, Size (the project's one size convention) and its
parser, and the checks every config shares (choices, config files).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, NamedTuple

import click
from click.core import ParameterSource

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A bad option or config value; the message says what is wrong and how to fix it."""


def option(default: Any = _MISSING, help: str = "", *, parse: Callable[[str], Any] | None = None,
           choices: tuple | list | None = None, flag: str | None = None, aliases: tuple[str, ...] = (),
           repeat: bool = False, cli: bool = True, metavar: str | None = None, shown: str | None = None,
           expert: bool = False, low: float | None = None, high: float | None = None, positive: bool = False) -> Any:
    """A dataclass field with its command-line description.

    parse: turns the typed text into the value (default: from the default's type; bool is on|off);
    flag: the flag if not --field-name; aliases: other accepted flags; repeat: the flag may be given
    several times and collects a list; cli=False: API and config files only; shown: the default as
    the help text shows it; expert: a working flag left out of --help (listed by --help-all and the docs);
    low / high: inclusive bounds of a number, positive: above 0 (every float must also be finite)."""
    meta = {"help": help, "parse": parse, "choices": choices, "flag": flag, "aliases": aliases, "repeat": repeat,
            "cli": cli, "metavar": metavar, "shown": shown, "expert": expert, "low": low, "high": high,
            "positive": positive}
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
        raise ConfigError(f"must be WIDTHxHEIGHT (e.g. 320x240), got {text!r}")
    if int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"each side must be at least 1 pixel, got {text!r}")
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
        raise ConfigError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"must be positive, got {value}")
    return value


def png_path(text: str) -> str:
    if Path(text).suffix.lower() != ".png":
        raise ConfigError(f"must be a .png file name, got {text!r}")
    return text


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise ConfigError(f"must be on or off, got {text!r}")
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


class Parsed(click.ParamType):
    """A click type made of one of the project's parse functions: its ConfigError is the message."""

    def __init__(self, parse: Callable[[str], Any], name: str):
        self.parse, self.name = parse, name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except (ConfigError, ValueError) as e:
            self.fail(str(e), param, ctx)


class Choice(click.Choice):
    """click.Choice with the project's wording: invalid choice: 'x' (choose from a, b)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value in self.choices:
            return value
        self.fail(f"invalid choice: {value!r} (choose from {', '.join(map(str, self.choices))})", param, ctx)


def _click_type(f: dataclasses.Field, default: Any) -> tuple[Any, dict[str, Any]]:
    """The click type of a field, and the options an optional-value flag needs (`--flag` alone = on)."""
    meta, parse = f.metadata, f.metadata.get("parse")
    if meta.get("choices"):
        return Choice([str(c) for c in meta["choices"]]), {}
    if parse is None and isinstance(default, bool):
        return Parsed(on_off, "on|off"), {"is_flag": False, "flag_value": True, "metavar": "on|off"}
    if parse is auto_on_off:
        return Parsed(auto_on_off, "auto|on|off"), {"is_flag": False, "flag_value": "on", "metavar": "auto|on|off"}
    if parse is None and default not in (None, _MISSING) and not isinstance(default, (list, tuple, dict)):
        parse = type(default)
    if parse is None:
        return click.STRING, {}
    return Parsed(parse, getattr(parse, "__name__", "value")), {"metavar": "WxH"} if parse is parse_size else {}


def click_options(cls: type, prefix: str = "", skip: tuple[str, ...] = (), required: tuple[str, ...] = (),
                  required_note: str = "required", experts: bool = False) -> Callable[[Callable], Callable]:
    """A decorator adding one click option per field of `cls` (see `option`); the parameter of field F
    is named PREFIX_F. Fields in `required` are marked so in the help; the caller checks them (after
    merging a --config file, where there is one). `experts`: show the expert options in --help too."""
    def decorate(fn: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name not in skip and f.metadata.get("cli", True):
                fn = click.option(flag_name(f, prefix), *f.metadata.get("aliases", ()),
                                  prefix.replace("-", "_") + f.name,
                                  **_option_kwargs(f, f.name in required, required_note, experts))(fn)
        return fn
    return decorate


def _option_kwargs(f: dataclasses.Field, required: bool, required_note: str, experts: bool) -> dict[str, Any]:
    meta, default = f.metadata, _default(f)
    kind, extra = _click_type(f, default)
    text = meta.get("help", "")
    if required:
        text += f" ({required_note})"
    elif default is not _MISSING:
        text += f" (default {meta.get('shown') or _shown(default)})"
    kwargs = {"type": kind, "default": None, "help": text, "hidden": meta.get("expert", False) and not experts,
              "multiple": meta.get("repeat", False), **extra}
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    elif "metavar" not in kwargs and not meta.get("choices"):
        kwargs["metavar"] = {int: "N", float: "X"}.get(meta.get("parse") or type(default), "TEXT")
    return kwargs


def given(cls: type, prefix: str = "", ctx: click.Context | None = None) -> dict[str, Any]:
    """The fields of `cls` whose flags were typed on the command line, by field name."""
    ctx = ctx or click.get_current_context()
    dest = prefix.replace("-", "_")
    typed = {f.name: ctx.params[dest + f.name] for f in dataclasses.fields(cls)
             if ctx.get_parameter_source(dest + f.name) == ParameterSource.COMMANDLINE}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in typed.items()}


def show_all_options(ctx: click.Context, _param: Any, value: bool) -> None:
    """--help-all: the help with the expert options too."""
    if value and not ctx.resilient_parsing:
        for p in ctx.command.params:
            p.hidden = False
        click.echo(ctx.get_help())
        ctx.exit()


def check_fields(obj: Any, error: type[Exception] = ConfigError, prefix: str = "") -> None:
    """The one check of a config dataclass's values, for flags, config files and the API alike: every field
    that declares `choices` holds one of them (each item, for a list field), every number is within its
    declared bounds, and every float is finite."""
    for f in dataclasses.fields(obj):
        meta, value, name = f.metadata, getattr(obj, f.name), flag_name(f, prefix)
        choices = meta.get("choices")
        for item in (value if isinstance(value, (list, tuple)) else [value]) if choices else []:
            if item is not None and item not in choices:
                raise error(f"{name} {item!r}: choose one of {', '.join(map(str, choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = _out_of_bounds(value, meta)
            if problem:
                raise error(f"{name} must be {problem}, got {value}")


def _out_of_bounds(value: float, meta: Any) -> str | None:
    """What `value` fails of the field's bounds (finite, positive, low, high), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if meta.get("positive") and not value > 0:
        return "positive"
    low, high = meta.get("low"), meta.get("high")
    if low is not None and value < low:
        return ("0 or more" if low == 0 else f"at least {low}") + (f" and at most {high}" if high is not None else "")
    if high is not None and value > high:
        return f"at most {high}" + (f" and at least {low}" if low is not None else "")
    return None


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def read_config_file(path: str | Path, cls: type,
                     clean: Callable[[dict[str, Any], str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The fields of a config written by a run (JSON); unknown keys are an error naming them. `clean`
    (data, where) -> data first drops or refuses what the class no longer has (retired fields)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--config {path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--config {path}: not a readable JSON config ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of {cls.__name__} fields")
    if clean is not None:
        data = clean(data, f"--config {path}")
    unknown = sorted(set(data) - field_names(cls))
    if unknown:
        raise ConfigError(f"--config {path}: unknown fields {', '.join(unknown)} (not in {cls.__name__})")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _fits(value, hints[name]):
            raise ConfigError(f"--config {path}: {name} must be {_type_name(hints[name])}, got {value!r}")
    return data


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value can stand for a field of type `hint` (an int for a float; a list for a tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple) or (isinstance(hint, type) and issubclass(hint, tuple)):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple, str))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false", type(None): "null"}
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if typing.get_origin(hint) is dict:
        return "an object"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def run_cli(group: click.Group, prog: str, argv: list[str] | None, errors: Callable[[], tuple],
            interrupted: str) -> int:
    """Run a click group as `prog`: its exit status, usage errors and the project's own errors as one line
    (`--debug` shows their traceback), Ctrl-C as status 130 with `interrupted` said."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return group.main(args=argv, prog_name=prog, standalone_mode=False) or 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:
        return _usage_error(prog, e)
    except (KeyboardInterrupt, click.exceptions.Abort):
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
    except errors() as e:
        if "--debug" in argv:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def _usage_error(prog: str, e: click.UsageError) -> int:
    """argparse's form: the usage line, then `PROG CMD: error: --flag: what is wrong`."""
    where = e.ctx.command_path if e.ctx else prog
    if e.ctx:
        print(e.ctx.get_usage(), file=sys.stderr)
    message = e.format_message()
    if isinstance(e, click.BadParameter) and not isinstance(e, click.MissingParameter) and e.param is not None:
        message = f"{e.param.opts[0] if e.param.opts else e.param.human_readable_name}: {e.message}"
    print(f"{where}: error: {message}", file=sys.stderr)
    return e.exit_code
