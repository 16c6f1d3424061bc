"""`comper-train`: one command per training stage (data, pretrain, rewards, rl, eval, export, pipeline).

Each stage module adds its own sub-command; errors a user can fix (a missing folder, a bad cache) print one
line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .data.cache import DataError


def _default_processes() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _data_build(args: argparse.Namespace) -> None:
    from .data.cache import build
    from .data.report import format_stats

    stats = build(Path(args.data), Path(args.out), processes=args.processes, only=args.only, limit=args.limit)
    print(format_stats(stats))


def _data_stats(args: argparse.Namespace) -> None:
    from .data.cache import load
    from .data.report import format_stats

    cache = load(Path(args.cache))
    print(json.dumps(cache.stats, indent=1) if args.json else format_stats(cache.stats))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="comper-train", description=__doc__.splitlines()[0])
    stages = p.add_subparsers(dest="stage", required=True)

    data = stages.add_parser("data", help="parse the datasets into the frame cache")
    data_cmds = data.add_subparsers(dest="command", required=True)
    b = data_cmds.add_parser("build", help="parse every source and write the cache")
    b.add_argument("--data", required=True, help="the datasets folder (e.g. ../shared/data)")
    b.add_argument("--out", required=True, help="cache folder to write")
    b.add_argument("--processes", type=int, default=_default_processes(), help="parser processes")
    b.add_argument("--only", nargs="+", help="build only these sources")
    b.add_argument("--limit", type=int, help="at most this many songs per source (quick builds)")
    b.set_defaults(func=_data_build)
    s = data_cmds.add_parser("stats", help="print what a cache holds")
    s.add_argument("--cache", required=True)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_data_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DataError as e:
        print(f"comper-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("comper-train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
