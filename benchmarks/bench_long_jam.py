"""Does an hour-long jam cost the same per frame as its first minute? A simulated jam (the live planner on a
simulated clock, as `comper rejam` runs it) of ``--minutes`` at 120 bpm, with the per-frame planning cost of every
minute: ``Planner.advance`` (what stands between a heard frame and the promised chords) and ``Planner.idle`` (the
work done after the plan is out: growing the next window's cache), median and p99, and the memory the process holds.

    python benchmarks/bench_long_jam.py [--model online-mle] [--minutes 60] [--lookahead 4 --commit 4]

The melody is ``assets/melodies/ode_to_joy.mid`` (or ``--melody``) looped, on the frame grid, so every minute is the
same music. An hour at 120 bpm is 28,800 frames, simulated as fast as the CPU allows: with the small model (~13 ms a
frame on a busy 2-core machine) about 7 minutes. Without a teacher, a model that listens first tends to keep silent
afterwards, hence ``--listen 0`` by default (chords from the first frame, as after an intro fill).

Minute 1 is the only one before the context window first slides (the small bundles: 256 frames, 32 s at 120 bpm);
from minute 2 on every minute slides alike, so minute 2 vs the last is the cleanest comparison (all rows print).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from app.engine.bundle import load_bundle, resolve_model  # noqa: E402
from app.engine.midifile import read_melody  # noqa: E402
from app.engine.options import add_arguments, add_plan_arguments, knob, parse_args, plan_from_args  # noqa: E402
from app.engine.planner import Planner  # noqa: E402
from app.engine.policy import OnnxPolicy  # noqa: E402
from app.engine.simulate import simulate  # noqa: E402

CHUNK = 32  # frames per simulate() call: the progress bar's step


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, in KiB on Linux


def row(minute: int, plan: list[float], idle: list[float], calls: list[int], onsets: int, rss: float) -> str:
    busy = [a + b for a, b in zip(plan, idle)]
    return (f"{minute:>6} {statistics.median(plan):>9.2f} {np.percentile(plan, 99):>8.2f} {max(plan):>8.2f} "
            f"{np.percentile(idle, 99):>8.2f} {np.percentile(busy, 99):>10.2f} {statistics.mean(calls):>7.2f} "
            f"{onsets:>7} {rss:>8.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a shipped model name or a bundle path (default: the default model)")
    ap.add_argument("--minutes", type=float, default=60)
    add_arguments(ap, [knob("bpm")], {"bpm": 120.0})
    add_plan_arguments(ap, listen=0)
    add_arguments(ap, [knob("threads")])
    ap.add_argument("--melody", type=Path, default=REPO / "assets" / "melodies" / "ode_to_joy.mid")
    args = parse_args(ap, argv)  # every number checked against its range (app/engine/options.py)
    settings = plan_from_args(args)

    bundle = load_bundle(resolve_model(args.model))
    planner = Planner(OnnxPolicy(bundle, threads=args.threads), settings)
    idle_ms: list[float] = []
    idle = planner.idle

    def timed_idle() -> None:  # simulate() calls it after every advance(); its cost is the worker's too
        t = time.perf_counter()
        idle()
        idle_ms.append((time.perf_counter() - t) * 1000)

    planner.idle = timed_idle
    loop = read_melody(args.melody).frames
    per_minute = int(round(args.bpm * 4))  # frames
    total = int(round(args.minutes * per_minute))
    melody = [loop[f % len(loop)] for f in range(total)]
    frame_ms = 60_000 / (args.bpm * 4)

    print(f"machine: {describe()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"model {bundle.name} (context {planner.context_frames} frames), {args.bpm:g} bpm, {args.minutes:g} min = "
          f"{total} frames of {args.melody.name} looped; lookahead {settings.lookahead_beats:g} beats, commit "
          f"{settings.commit_beats:g}, listen {settings.listen_beats:g}, temperature {settings.temperature:g}, "
          f"{args.threads} thread(s)")
    print("per-frame cost in ms (advance: heard frame -> promised chords; idle: after the plan is out)")
    header = (f"{'minute':>6} {'adv med':>9} {'adv p99':>8} {'adv max':>8} {'idle p99':>8} {'a+i p99':>10} "
              f"{'calls':>7} {'onsets':>7} {'RSS MB':>8}")
    print(header)
    minutes: dict[int, tuple[list[float], list[float]]] = {}
    plan_ms: list[float] = []
    calls: list[int] = []
    onsets = 0
    vocab = planner.vocab
    started = time.perf_counter()
    with tqdm(total=total, unit="frame", desc="jamming", smoothing=0.05, file=sys.stderr) as bar:
        done = 0
        while done < total:
            n = min(CHUNK, total - done, (len(plan_ms) // per_minute + 1) * per_minute - len(plan_ms))
            jam = simulate(planner, melody[done:done + n])
            plan_ms += [p.seconds * 1000 for p in jam.plans]
            calls += [p.model_calls for p in jam.plans]
            onsets += sum(1 for c in jam.chords if vocab.is_onset(c))
            done += n
            bar.update(n)
            if done % per_minute == 0 or done == total:
                m = (done - 1) // per_minute + 1
                lo = (m - 1) * per_minute
                minutes[m] = (plan_ms[lo:done], idle_ms[lo:done])
                tqdm.write(row(m, plan_ms[lo:done], idle_ms[lo:done], calls[lo:done], onsets, rss_mb()),
                           file=sys.stdout)
                onsets = 0
    wall = time.perf_counter() - started

    first, last = min(minutes), max(minutes)
    (p1, i1), (pn, i_n) = minutes[first], minutes[last]
    b1 = [a + b for a, b in zip(p1, i1)]
    bn = [a + b for a, b in zip(pn, i_n)]
    print(f"{total} frames in {wall:.0f} s ({total / wall:.1f} frames/s; a live jam needs {1000 / frame_ms:.0f})")
    for name, a, b in (("advance", p1, pn), ("advance + idle", b1, bn)):
        ma, mb = statistics.median(a), statistics.median(b)
        pa, pb = float(np.percentile(a, 99)), float(np.percentile(b, 99))
        print(f"{name:>15}: minute {first} median {ma:.2f} p99 {pa:.2f} ms; minute {last} median {mb:.2f} p99 "
              f"{pb:.2f} ms; ratio {mb / ma:.2f} (median), {pb / pa:.2f} (p99)")
    p99 = float(np.percentile(plan_ms, 99))
    print(f"whole jam: advance p99 {p99:.2f} ms = {100 * p99 / frame_ms:.1f}% of a {frame_ms:.1f} ms frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
