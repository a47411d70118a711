"""`simgen`: render simulated RGB-D datasets, look at them, check asset libraries.

\b
    simgen render --n 50000 --out shards/ [--scene indoor|outdoor|mixed] [--workers 2] ...
    simgen inspect shards/
    simgen preview shards/ --out sheet.png
    simgen assets check DIR        simgen assets draft DIR

Shell completion (bash; zsh and fish likewise): eval "$(_SIMGEN_COMPLETE=bash_source simgen)".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from simgen import __version__
from simgen.config import ConfigError, RenderConfig
from simgen.options import Choice, Parsed, click_options, given, png_path, positive_int, run_cli
from simgen.runs import require_writable


def _int_pair(text: str, sep: str, form: str) -> tuple[int, int]:
    """'A<sep>B' with 0 <= A < B: a shard range FIRST:END or a part I/N."""
    try:
        a, b = (int(x) for x in text.split(sep))
    except ValueError:
        raise ConfigError(f"must be {form}, got {text!r}") from None
    if not 0 <= a < b:
        first, _, end = form.partition(" ")[0].partition(sep)
        raise ConfigError(f"needs 0 <= {first} < {end}, got {text!r}")
    return a, b


def _shard_range(text: str) -> tuple[int, int]:
    return _int_pair(text, ":", "FIRST:END (shard indices, END excluded)")


def _part(text: str) -> tuple[int, int]:
    return _int_pair(text, "/", "I/N (task I of N, from 0)")


POSITIVE = Parsed(positive_int, "positive_int")
# a contact sheet is for looking at: tiles up to a screen's height, and at most this many samples
MAX_TILE_HEIGHT, MAX_SHEET_SAMPLES = 1024, 200
PNG = Parsed(png_path, "png_path")


@click.group(help=__doc__, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="simgen")
def cli() -> None:
    pass


@cli.command(help="Render randomized scenes into OUT (docs/shard-format.md). Run the same command again after an "
                  "interruption to resume; a larger --n extends the dataset.")
@click.option("--n", type=POSITIVE, required=True, help="total number of samples in the dataset")
@click.option("--out", required=True, help="dataset directory (created; empty or holding this dataset)")
@click.option("--seed", type=int, default=0, show_default=True, help="dataset seed: same config + seed = same data")
@click_options(RenderConfig)
@click.option("--no-builtin-assets", "no_builtin_assets", is_flag=True, help="only the --assets libraries")
@click.option("--workers", type=POSITIVE, default=1, show_default=True, help="local render processes")
@click.option("--threads", type=int, help="Cycles threads per worker (default: cores / workers)")
@click.option("--executor", type=Choice(["local", "ray"]), default="local", show_default=True,
              help="local processes, or one Ray task per shard")
@click.option("--ray-address", help="Ray cluster to join (default: start a local one)")
@click.option("--shard-range", type=Parsed(_shard_range, "FIRST:END"), metavar="FIRST:END",
              help="render only these shards (job arrays)")
@click.option("--part", type=Parsed(_part, "I/N"), metavar="I/N", help="render part I of N shard ranges (job arrays)")
@click.option("--verify", is_flag=True, help="check every committed shard's sha256 first")
@click.option("--quiet", is_flag=True, help="no progress bar")
def render(**a: Any) -> int:
    from simgen.runner import iter_shard_ranges, render as render_dataset

    if a["shard_range"] and a["part"]:
        raise ConfigError("give either --shard-range or --part, not both")
    config = config_from_args()
    config.validate()
    shard_range = a["shard_range"]
    if a["part"]:
        ranges = list(iter_shard_ranges(a["n"], config.samples_per_shard, a["part"][1]))
        if a["part"][0] >= len(ranges):
            print(f"simgen: part {a['part'][0]}/{a['part'][1]} has no shards (only {len(ranges)} parts needed)")
            return 0
        shard_range = ranges[a["part"][0]]
    summary = render_dataset(a["out"], config, a["seed"], a["n"], workers=a["workers"], executor=a["executor"],
                             shard_range=shard_range, ray_address=a["ray_address"], threads=a["threads"],
                             show_progress=not a["quiet"], verify=a["verify"])
    _print_render_summary(a["out"], summary)
    return 0


def _print_render_summary(out: str, summary: dict[str, Any]) -> None:
    if summary["repaired"]:
        print(f"simgen: rendered again {len(summary['repaired'])} committed shard(s) that were missing or damaged: "
              f"{', '.join(summary['repaired'][:5])}")
    if summary["shards"] == 0:
        print(f"simgen: {out} already holds all requested samples; nothing to do")
    else:
        rej = ", ".join(f"{k} {v}" for k, v in sorted(summary["rejected"].items())) or "none"
        print(f"simgen: rendered {summary['rendered']} samples in {summary['shards']} shards into {out} "
              f"(rejected views: {rej})")
    if summary.get("by_others"):
        print(f"simgen: {summary['by_others']} of the planned samples were committed meanwhile by another driver "
              "on this dataset, and not rendered again")


def config_from_args(ctx: click.Context | None = None) -> RenderConfig:
    """RenderConfig from the typed flags of `simgen render`; the rest are the dataclass's defaults."""
    ctx = ctx or click.get_current_context()
    values = given(RenderConfig, ctx=ctx)
    if ctx.params.get("no_builtin_assets"):
        values["builtin_assets"] = False
    if values.get("intrinsics") is not None:
        if "camera" in values:
            raise ConfigError("give either --camera or --intrinsics, not both")
        values["camera"] = "custom"
        values.setdefault("resolution", None)  # explicit intrinsics: their own W,H unless --resolution is typed
    return RenderConfig(**values)


def parse_render_config(argv: list[str]) -> RenderConfig:
    """The RenderConfig `simgen render ARGV` would render (for tests and scripts)."""
    with cli.commands["render"].make_context("render", list(argv)) as ctx:
        return config_from_args(ctx)


@cli.command(help="Counts, depth statistics, rejected views, checksum verification.")
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--no-verify", is_flag=True, help="skip sha256 verification of the shards")
@click.option("--max-samples", type=POSITIVE, help="read at most this many samples for the statistics")
def inspect(dataset: str, as_json: bool, no_verify: bool, max_samples: int | None) -> int:
    from simgen.report import format_report, inspect_dataset

    report = inspect_dataset(dataset, verify=not no_verify, max_samples=max_samples)
    print(json.dumps(report, indent=1) if as_json else format_report(report))
    return 1 if report["bad_shards"] else 0


@cli.command(help="Contact sheet: RGB | colour-mapped depth | instance colours.")
@click.argument("dataset")
@click.option("--out", required=True, type=PNG, help="PNG file to write")
@click.option("--count", type=click.IntRange(1, MAX_SHEET_SAMPLES), default=12, show_default=True,
              help="samples on the sheet")
@click.option("--height", type=click.IntRange(8, MAX_TILE_HEIGHT), default=160, show_default=True,
              help="tile height in pixels")
def preview(dataset: str, out: str, count: int, height: int) -> int:
    from simgen.preview import contact_sheet

    require_writable(out, "--out")
    shown = contact_sheet(dataset, out, count=count, tile_height=height)
    print(f"simgen: wrote {out} ({shown} samples: RGB | depth | instances)")
    return 0


@cli.group(help="Check or draft an asset library manifest.")
def assets() -> None:
    pass


@assets.command(help="List every problem of a library, with the file and a fix.")
@click.argument("folder")
def check(folder: str) -> int:
    from simgen.assets import check_library

    problems = check_library(folder)
    for prob in problems:
        print(f"{prob.file}: {prob.message}\n    fix: {prob.fix}")
    print(f"simgen: {folder}: " + (f"{len(problems)} problem(s)" if problems else "library ok"))
    return 1 if problems else 0


@assets.command(help="Draft library.json for a folder of meshes, textures and HDRIs.")
@click.argument("folder")
@click.option("--family", type=Choice(["indoor", "outdoor"]), default="indoor", show_default=True)
@click.option("--force", is_flag=True, help="overwrite an existing library.json")
def draft(folder: str, family: str, force: bool) -> int:
    from simgen.assets import LIBRARY_FILE, draft_manifest

    target = Path(folder) / LIBRARY_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass --force to overwrite it")
    manifest = draft_manifest(folder, family=family)
    target.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"simgen: wrote {target}: {len(manifest['meshes'])} meshes, {len(manifest['textures'])} textures, "
          f"{len(manifest['hdris'])} HDRIs. Review categories, sizes and placements, then run "
          f"`simgen assets check {folder}`.")
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user can fix, reported as one line."""
    from simgen.assets import AssetError
    from simgen.bootstrap import BlenderUnavailable
    from simgen.runner import DatasetError
    from simgen.shards import ShardError

    return ConfigError, AssetError, BlenderUnavailable, ShardError, DatasetError, ValueError, OSError


def main(argv: list[str] | None = None) -> int:
    return run_cli(cli, "simgen", argv, user_errors,
                   "committed shards are kept. Run the same command again to resume.")


if __name__ == "__main__":
    sys.exit(main())
