"""Slow work off the GUI thread, with the result handed back on it.

Why lanes: loading a model, starting or stopping a jam (joins threads, saves the MIDI file), opening MIDI ports
and rendering audio all take from milliseconds to seconds, and the window must never freeze. Each lane is one
worker thread, so the jobs of a lane run in order (a jam's stop always finishes before the next start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

LANES = ("jam", "models", "io")


class Background(QObject):
    """``submit(lane, fn, on_done, on_error)``: ``fn()`` runs on the lane's thread, the callbacks on the GUI's."""

    _finished = Signal(object, object, object)  # callback, value, is_error

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pools = {lane: ThreadPoolExecutor(1, thread_name_prefix=f"comper-{lane}") for lane in LANES}
        self._finished.connect(self._deliver)  # emitted from a worker thread: queued to the GUI thread
        self.errors: list[BaseException] = []  # uncaught ones (no on_error), for tests and the status bar
        self.closed = False

    def submit(self, lane: str, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> Future | None:
        """Queue ``fn``; after ``shutdown`` nothing runs (the window is closing) and None is returned."""
        if self.closed:
            return None

        def job() -> Any:
            try:
                value = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the GUI thread
                log.debug("background job failed", exc_info=True)
                self._finished.emit(on_error or self._unhandled, e, True)
                raise
            if on_done is not None:
                self._finished.emit(on_done, value, False)
            return value

        return self._pools[lane].submit(job)

    def _deliver(self, callback: Callable[[Any], None], value: Any, is_error: bool) -> None:
        if not self.closed:  # results that arrive while the window closes have nobody to tell
            callback(value)

    def _unhandled(self, e: BaseException) -> None:
        self.errors.append(e)
        log.error("background job failed: %s", e)

    def shutdown(self, wait: bool = True) -> None:
        self.closed = True
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=not wait)
