"""Data pipeline speed: full cache build, cache load, and training windows served per second.

    python benchmarks/bench_data.py --data ../shared/data [--cache DIR] [--processes 2]

Targets (issue "Foundation"): build under 5 minutes with 2 processes, load under 2 s, over 5,000 windows/s.
Pass ``--cache`` to reuse an existing cache and skip the build.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from training.data import cache as cache_mod  # noqa: E402
from training.data.dataset import WindowConfig, WindowDataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--cache", help="existing cache (skips the build)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--windows", type=int, default=20000)
    args = ap.parse_args()
    print(f"machine: {describe()}")
    tmp = None
    if args.cache:
        path = Path(args.cache)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="comper-bench-")
        path = Path(tmp.name)
        t = time.perf_counter()
        stats = cache_mod.build(Path(args.data), path, processes=args.processes)
        build_s = time.perf_counter() - t
        print(f"build: {build_s:.1f} s with {args.processes} processes for {stats['songs_kept']} songs "
              f"({stats['frames']:,} frames); target < 300 s")

    loads = []
    for _ in range(5):
        t = time.perf_counter()
        cache = cache_mod.load(path)
        loads.append(time.perf_counter() - t)
    print(f"load: median {statistics.median(loads) * 1000:.0f} ms over 5 loads; target < 2000 ms")

    for order in ("chord_first", "separate"):
        ds = WindowDataset(cache, "train", config=WindowConfig(order=order), seed=0)
        idx = np.random.default_rng(0).integers(0, len(ds), args.windows)
        t = time.perf_counter()
        for i in idx:
            ds[int(i)]
        rate = args.windows / (time.perf_counter() - t)
        print(f"windows ({order}, random crop + transposition): {rate:,.0f} windows/s; target > 5,000")
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    t = time.perf_counter()
    n = 0
    for n, _ in enumerate(loader, 1):
        if n == 100:
            break
    print(f"DataLoader batch 64, 0 workers: {n * 64 / (time.perf_counter() - t):,.0f} windows/s")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
