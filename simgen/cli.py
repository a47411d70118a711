"""`simgen`: render simulated RGB-D datasets, look at them, check asset libraries.

    simgen render --n 50000 --out shards/ [--scene indoor|outdoor|mixed] [--workers 2] ...
    simgen inspect shards/
    simgen preview shards/ --out sheet.png
    simgen assets check DIR        simgen assets draft DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simgen import __version__
from simgen.config import ConfigError, RenderConfig
from simgen.options import add_options, given, png_path, positive_int


def _shard_range(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be FIRST:END (shard indices, END excluded), got {text!r}") from None
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"needs 0 <= FIRST < END, got {text!r}")
    return a, b


def _part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be I/N (task I of N, from 0), got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"needs 0 <= I < N, got {text!r}")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"simgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render (resume, extend) a dataset of simulated RGB-D shards",
                       description="Render randomized scenes into OUT (docs/shard-format.md). Run the same command "
                                   "again after an interruption to resume; a larger --n extends the dataset.")
    r.add_argument("--n", type=positive_int, required=True, help="total number of samples in the dataset")
    r.add_argument("--out", required=True, help="dataset directory (created; must be empty or hold this dataset)")
    r.add_argument("--seed", type=int, default=0, help="dataset seed: same config + seed = same data (default 0)")
    add_options(r, RenderConfig)
    r.add_argument("--no-builtin-assets", dest="builtin_assets", action="store_const", const=False,
                   default=argparse.SUPPRESS, help="use only the --assets libraries (= --builtin-assets off)")
    r.add_argument("--workers", type=positive_int, default=1, help="local render processes (default 1)")
    r.add_argument("--threads", type=int, help="Cycles threads per worker (default: cores / workers)")
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local process pool, or one Ray task per shard (default local)")
    r.add_argument("--ray-address", help="Ray cluster to join (default: start a local one)")
    group = r.add_mutually_exclusive_group()
    group.add_argument("--shard-range", type=_shard_range, metavar="FIRST:END",
                       help="render only these shards (job arrays; same OUT on a shared file system)")
    group.add_argument("--part", type=_part, metavar="I/N", help="render part I of N equal shard ranges (job arrays)")
    r.add_argument("--verify", action="store_true",
                   help="check every committed shard's sha256 first (default: size and time only); damaged ones "
                        "are rendered again")
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("inspect", help="counts, depth statistics, rejected views, checksum verification")
    i.add_argument("dataset")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.add_argument("--no-verify", action="store_true", help="skip sha256 verification of the shards")
    i.add_argument("--max-samples", type=positive_int, help="read at most this many samples for the statistics")

    v = sub.add_parser("preview", help="contact sheet: RGB | colour-mapped depth | instance colours")
    v.add_argument("dataset")
    v.add_argument("--out", required=True, type=png_path, help="PNG file to write")
    v.add_argument("--count", type=positive_int, default=12, help="samples on the sheet (default 12)")
    v.add_argument("--height", type=positive_int, default=160, help="tile height in pixels (default 160)")

    a = sub.add_parser("assets", help="check or draft an asset library manifest")
    asub = a.add_subparsers(dest="assets_command", required=True)
    c = asub.add_parser("check", help="list every problem of a library, with the file and a fix")
    c.add_argument("folder")
    d = asub.add_parser("draft", help="draft library.json for a folder of meshes, textures and HDRIs")
    d.add_argument("folder")
    d.add_argument("--family", choices=["indoor", "outdoor"], default="indoor")
    d.add_argument("--force", action="store_true", help="overwrite an existing library.json")
    return p


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    """RenderConfig from the typed flags; the rest are the dataclass's defaults."""
    values = given(args, RenderConfig)
    if values.get("intrinsics") is not None:
        if "camera" in values:
            raise ConfigError("give either --camera or --intrinsics, not both")
        values["camera"] = "custom"
        values.setdefault("resolution", None)  # explicit intrinsics: their own W,H unless --resolution is typed
    return RenderConfig(**values)


def _render(args: argparse.Namespace) -> int:
    from simgen.runner import iter_shard_ranges, render

    config = config_from_args(args)
    config.validate()
    shard_range = args.shard_range
    if args.part:
        ranges = list(iter_shard_ranges(args.n, config.samples_per_shard, args.part[1]))
        if args.part[0] >= len(ranges):
            print(f"simgen: part {args.part[0]}/{args.part[1]} has no shards (only {len(ranges)} parts needed)")
            return 0
        shard_range = ranges[args.part[0]]
    summary = render(args.out, config, args.seed, args.n, workers=args.workers, executor=args.executor,
                     shard_range=shard_range, ray_address=args.ray_address, threads=args.threads,
                     show_progress=not args.quiet, verify=args.verify)
    if summary["repaired"]:
        print(f"simgen: rendered again {len(summary['repaired'])} committed shard(s) that were missing or damaged: "
              f"{', '.join(summary['repaired'][:5])}")
    if summary["shards"] == 0:
        print(f"simgen: {args.out} already holds all requested samples; nothing to do")
    else:
        rej = ", ".join(f"{k} {v}" for k, v in sorted(summary["rejected"].items())) or "none"
        print(f"simgen: rendered {summary['rendered']} samples in {summary['shards']} shards into {args.out} "
              f"(rejected views: {rej})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from simgen.assets import AssetError
    from simgen.bootstrap import BlenderUnavailable
    from simgen.shards import ShardError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            from simgen.runner import DatasetError  # noqa: F401  (caught below)
            return _render(args)
        if args.command == "inspect":
            from simgen.report import format_report, inspect_dataset

            report = inspect_dataset(args.dataset, verify=not args.no_verify, max_samples=args.max_samples)
            print(json.dumps(report, indent=1) if args.json else format_report(report))
            return 1 if report["bad_shards"] else 0
        if args.command == "preview":
            from simgen.preview import contact_sheet

            count = contact_sheet(args.dataset, args.out, count=args.count, tile_height=args.height)
            print(f"simgen: wrote {args.out} ({count} samples: RGB | depth | instances)")
            return 0
        if args.command == "assets":
            return _assets(args)
    except KeyboardInterrupt:
        print("\nsimgen: interrupted; committed shards are kept. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    except (ConfigError, AssetError, BlenderUnavailable, ShardError, ValueError, OSError) as e:
        print(f"simgen: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from simgen.runner import DatasetError

        if isinstance(e, DatasetError):
            print(f"simgen: error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


def _assets(args: argparse.Namespace) -> int:
    from simgen.assets import LIBRARY_FILE, check_library, draft_manifest

    if args.assets_command == "check":
        problems = check_library(args.folder)
        for prob in problems:
            print(f"{prob.file}: {prob.message}\n    fix: {prob.fix}")
        print(f"simgen: {args.folder}: " + (f"{len(problems)} problem(s)" if problems else "library ok"))
        return 1 if problems else 0
    target = Path(args.folder) / LIBRARY_FILE
    if target.exists() and not args.force:
        print(f"simgen: error: {target} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    manifest = draft_manifest(args.folder, family=args.family)
    target.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"simgen: wrote {target}: {len(manifest['meshes'])} meshes, {len(manifest['textures'])} textures, "
          f"{len(manifest['hdris'])} HDRIs. Review categories, sizes and placements, then run "
          f"`simgen assets check {args.folder}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
