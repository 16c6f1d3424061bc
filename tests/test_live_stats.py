"""The live jam's timing bookkeeping: statistics that cost the same in minute 60 as in minute 1, the scheduler's
waits, and the real-time priority it asks for (no JACK, no model)."""

from __future__ import annotations

import random
import statistics
import threading
import time

from app.engine.live import JamStats, realtime_priority, wait_until


def test_summary_is_the_statistics_modules_figures_without_sorting_an_hours_values():
    rng = random.Random(0)
    for n in (0, 1, 2, 3, 10, 99, 100, 101, 1000):
        xs = [rng.expovariate(1.0) for _ in range(n)]
        stats = JamStats()
        for x in xs:
            stats.add_plan(x)
            stats.add_onset(x / 10)
        s = stats.summary()
        median = statistics.median(xs) if xs else 0.0
        p99 = float(statistics.quantiles(xs, n=100)[98]) if n >= 2 else (xs[0] if xs else 0.0)
        assert abs(s["plan_ms_median"] - median) < 1e-12 and abs(s["plan_ms_p99"] - p99) < 1e-9, n
        assert abs(s["onset_error_ms_p99"] - p99 / 10) < 1e-9, n
        assert stats.plan_ms == xs  # the raw values stay, in arrival order
    for _ in range(28_800 - 1000):  # an hour of frames at 120 bpm
        stats.add_plan(rng.random())
    t = time.perf_counter()
    for _ in range(10):
        stats.summary()
    assert (time.perf_counter() - t) / 10 < 0.002  # was ~13 ms of sorting under the GIL, every second


def test_wait_until_returns_at_the_deadline_and_stops_early():
    stop = threading.Event()
    for spin in (0.0015, 0.0):
        deadline = time.monotonic() + 0.02
        assert wait_until(deadline, stop, spin=spin)
        assert time.monotonic() >= deadline
    threading.Timer(0.02, stop.set).start()
    t = time.monotonic()
    assert not wait_until(t + 5, stop)
    assert time.monotonic() - t < 1


def test_realtime_priority_is_asked_for_and_refusal_is_not_an_error():
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(realtime_priority()))
    t.start()
    t.join()
    assert got in ([True], [False])  # True where the OS allows it (root, rtprio limit), never an exception
