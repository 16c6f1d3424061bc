"""The stall meter: proof that the window never freezes.

A precise 10 ms timer on the GUI thread notes the time between its ticks; anything that blocks the thread (a
slow paint, a lock, a file written on the wrong thread) shows up as a gap. The stall is the gap beyond the
timer's own period; the largest one is shown in the health line and printed when a ``--demo`` run exits.

It also splits the worst gap: the CPU time the GUI thread itself used (our code being slow), the time it sat
runnable on the kernel's run queue (a machine too busy to give it a CPU; Linux's schedstat), and the rest, in
which it was blocked (the GIL, a lock).
"""

from __future__ import annotations

import os
import time

from PySide6.QtCore import QObject, Qt, QTimer

from . import style


class StallMeter(QObject):
    def __init__(self, parent: QObject | None = None, period_ms: int = style.STALL_TICK_MS) -> None:
        super().__init__(parent)
        self.period_ms = period_ms
        self.max_ms = 0.0  # largest stall since the last reset (e.g. since the jam started)
        self.max_busy_ms = 0.0  # the GUI thread's own CPU time during that stall
        self.max_queued_ms = 0.0  # its time runnable but not running (no free CPU) during that stall
        self.max_total_ms = 0.0  # largest since the meter started (the window opening included)
        self.ticks = 0
        self._last: float | None = None
        self._last_cpu = 0.0
        self._last_queued = 0.0
        self._schedstat: int | None = None  # /proc/thread-self/schedstat of the GUI thread (Linux)
        self.has_schedstat = False
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(period_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        """Start measuring; call it on the GUI thread (the run-queue figures are read for the calling thread)."""
        self._last = None
        if self._schedstat is None:
            try:
                self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
                self.has_schedstat = True
            except OSError:
                pass
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def pause(self) -> None:
        """Stop counting (the next gap is not a stall) until ``resume``."""
        self._timer.stop()

    def resume(self) -> None:
        self._last = None
        self._timer.start()

    def reset(self) -> None:
        self.max_ms, self.max_busy_ms, self.max_queued_ms, self.ticks, self._last = 0.0, 0.0, 0.0, 0, None

    def describe(self) -> str:
        queued = f", waited for a CPU {self.max_queued_ms:.0f} ms" if self.has_schedstat else ""
        return f"max GUI stall {self.max_ms:.0f} ms (the GUI thread ran {self.max_busy_ms:.0f} ms of it{queued})"

    def _queued_s(self) -> float:
        try:
            return int(os.pread(self._schedstat, 64, 0).split()[1]) / 1e9 if self._schedstat is not None else 0.0
        except (OSError, ValueError, IndexError):
            return 0.0

    def _tick(self) -> None:
        now, cpu, queued = time.perf_counter(), time.thread_time(), self._queued_s()
        if self._last is not None:
            stall = (now - self._last) * 1000 - self.period_ms
            if stall > self.max_ms:
                self.max_ms = stall
                self.max_busy_ms = (cpu - self._last_cpu) * 1000
                self.max_queued_ms = (queued - self._last_queued) * 1000
                self.max_total_ms = max(self.max_total_ms, stall)
        self._last, self._last_cpu, self._last_queued = now, cpu, queued
        self.ticks += 1
