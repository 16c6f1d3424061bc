"""The metronome: a click on the synth's drum channel on every beat of the count-in, or of the whole jam. With
drums in the band, the drummer counts in instead (rim clicks on the beats of the count-in bars), as a band's would.

It runs on its own thread against the jam's clock (the same frame grid the chords use, read again before every
click: a tempo change or an external clock moves it), so clicks land on the beat whatever the GUI does; the mode
can change mid-jam (read at every click).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..engine.clock import FrameClock, wait_for
from .audio import SynthHost
from .loop_thread import LoopThread


def beat_frames(meter: tuple[int, int]) -> tuple[int, int]:
    """(frames per click, frames per bar): a click per meter unit (a quarter in x/4, an eighth in x/8)."""
    num, den = meter
    unit = max(1, 16 // den)
    return unit, unit * num


class Metronome(LoopThread):
    def __init__(self, host: SynthHost, mode: Callable[[], str]) -> None:
        super().__init__()
        self.host, self.mode = host, mode
        self.clicks = 0

    def start(self, clock: Callable[[], FrameClock], meter: tuple[int, int], count_in_frames: int,
              drummer: bool = False) -> None:
        """Click on ``clock()`` (the jam's clock now: a tempo change replaces it); ``drummer``: the band has drums,
        so the count-in is theirs."""
        self.launch("comper-metronome", self._run, clock, meter, count_in_frames, drummer)

    def _run(self, clock: Callable[[], FrameClock], meter: tuple[int, int], count_in_frames: int, drummer: bool,
             stop: threading.Event) -> None:
        unit, bar = beat_frames(meter)
        frame, sounding = -(count_in_frames // unit) * unit, None
        try:
            while wait_for(lambda f=frame: clock().time_of(f), stop):
                if sounding is not None:
                    self.host.click_off(sounding)
                    sounding = None
                mode = self.mode()
                if mode == "always" or (mode == "count-in" and frame < 0):
                    sounding = self.host.click(frame % bar == 0, sticks=drummer and frame < 0)
                    self.clicks += sounding is not None
                frame += unit
        finally:
            if sounding is not None:
                self.host.click_off(sounding)
