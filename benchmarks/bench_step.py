"""Cost of one next-token step at a 256-token prefix: onnxruntime with the KV cache, onnxruntime recomputing the
whole prefix, and torch eager with its cache; 1 and 2 threads; median and p99.

    python benchmarks/bench_step.py [--configs small paper] [--iters 200]

Targets (issue "Models"): `small` under 2 ms median with 1 thread; the cached step at least 10x faster than
recomputing the prefix. Weights are random: the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from training.export import app_runner, export_onnx  # noqa: E402
from training.models.policy import OnlinePolicy  # noqa: E402
from training.models.transformer import preset  # noqa: E402

PREFIX = 256


def timed(fn, iters: int) -> tuple[float, float]:
    for _ in range(5):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), float(np.percentile(times, 99))


def bench(config: str, iters: int, tmp: Path) -> None:
    torch.manual_seed(0)
    policy = OnlinePolicy(preset(config, dropout=0.0)).eval()
    path = tmp / f"{config}.onnx"
    export_onnx(policy, path)
    cfg = policy.cfg
    prefix = np.random.default_rng(0).integers(4, cfg.vocab_size, (1, PREFIX)).astype(np.int64)
    empty = np.zeros((cfg.n_layer, 1, cfg.n_head, 0, cfg.head_dim), np.float32)
    print(f"\n{config}: {cfg.n_layer} layers x {cfg.d_model}, {policy.num_params() / 1e6:.1f}M parameters, "
          f"prefix {PREFIX} tokens")
    print(f"{'engine':<34}{'threads':>8}{'median ms':>11}{'p99 ms':>9}")
    for threads in (1, 2):
        sess = app_runner(path, threads=threads).session  # the app's session (threads set, spinning off)
        _, k, v = sess.run(None, {"tokens": prefix, "start": np.array(0, np.int64), "past_k": empty, "past_v": empty})
        one = np.array([[7]], np.int64)
        feed = {"tokens": one, "start": np.array(PREFIX, np.int64), "past_k": k, "past_v": v}
        cached = timed(lambda: sess.run(None, feed), iters)
        full_in = {"tokens": np.concatenate([prefix, one], 1), "start": np.array(0, np.int64), "past_k": empty,
                   "past_v": empty}
        full = timed(lambda: sess.run(None, full_in), max(20, iters // 10))
        torch.set_num_threads(threads)
        with torch.no_grad():
            _, cache = policy(torch.as_tensor(prefix))
            tok = torch.tensor([[7]])
            eager = timed(lambda: policy(tok, past=cache, start=PREFIX), iters)
        for name, (med, p99) in (("onnxruntime, KV cache", cached), ("onnxruntime, recompute prefix", full),
                                 ("torch eager, KV cache", eager)):
            print(f"{name:<34}{threads:>8}{med:>11.2f}{p99:>9.2f}")
        print(f"{'cached vs recompute speed-up':<34}{threads:>8}{full[0] / cached[0]:>10.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["small", "paper"])
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            bench(config, args.iters, Path(tmp))


if __name__ == "__main__":
    main()
