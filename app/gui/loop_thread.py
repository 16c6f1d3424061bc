"""One daemon thread running one timed loop until stopped: the metronome, the demo player, the replay player.

Each of them restarts cleanly (a new stop event per run, so a late wake-up of the old loop can never act on the
new one) and stops within a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class LoopThread:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def launch(self, name: str, target: Callable[..., None], *args) -> None:
        """Stop any previous run, then call ``target(*args, stop_event)`` on a fresh daemon thread."""
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=target, args=(*args, self._stop), name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            self._thread = None
