"""The jam's lifecycle for the window: start, stop, switch model, panic, all off the GUI thread.

The jam is opened as `comper jam` opens it (``app/session.py``: ``open_jam``: the planner, the clock, the
header, the journal, the session), with the window's sinks and the desktop's header fields. Added here: the
metronome, the demo melody, and saving every jam into the sessions folder when it stops.

A jam that fails by itself (NaN logits, an onnxruntime error, a dead engine thread: ``JamSession.fault``) is
stopped and saved like any other, then ``failed`` says why in one line; before, the window went on showing a jam
that only held its last chord, and the demo exited 0 with "0 chords".
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..engine.live import JamSession, JamSettings, JamSnapshot
from ..session import JamRequest, RunningJam, open_jam
from .background import Background
from .demo import DemoPlayer
from .metronome import Metronome, beat_frames
from .models import ModelCache
from .router import NoteRouter

IDLE, STARTING, RUNNING, STOPPING = "idle", "starting", "running", "stopping"


@dataclass(frozen=True)
class JamConfig:
    model_path: str
    settings: JamSettings
    programs: dict[str, int]
    demo: bool = False


def new_seed() -> int:
    """A fresh seed per jam (recorded in the session, so a replay or re-jam can reproduce it)."""
    return secrets.randbelow(2**31)


class JamController(QObject):
    state_changed = Signal(str)
    started = Signal(object)  # {"model", "teacher", "journal"}
    stopped = Signal(object, object)  # summary dict, saved MIDI path (None if saving failed)
    failed = Signal(str)  # a one-line reason (a model that will not load, a planner fault, ...)
    model_switched = Signal(str, int)  # the model's name, the frame (a bar line) it takes over at
    _faulted = Signal()  # from the failing engine thread to the GUI thread

    def __init__(self, background: Background, models: ModelCache, sinks: list, router: NoteRouter,
                 metronome: Metronome, demo: DemoPlayer, sessions_dir: Callable[[], Path],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bg, self.models, self.sinks, self.router = background, models, sinks, router
        self.metronome, self.demo, self.sessions_dir = metronome, demo, sessions_dir
        self.state = IDLE
        # (an external clock to follow, made for these settings, or None; ports Comper's own clock goes to)
        self.clocks: Callable[[JamSettings], tuple[object | None, list]] | None = None
        self.session: JamSession | None = None
        self.running: RunningJam | None = None
        self.config: JamConfig | None = None
        self.last_summary: dict | None = None
        self.last_saved: Path | None = None
        self._faulted.connect(self._stop_after_fault)

    def _set(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    # --- start / stop ------------------------------------------------------------------------------------

    def start(self, config: JamConfig) -> bool:
        if self.state != IDLE:
            return False
        self.config = config
        self._set(STARTING)
        self.bg.submit("jam", lambda: self._start(config), self._started, self._start_failed)
        return True

    def _start(self, config: JamConfig) -> tuple[RunningJam, dict]:
        s, plan = config.settings, config.settings.plan
        policy = self.models.policy(config.model_path)
        teacher = self.models.teacher() if plan.listen > 0 else None
        note = ""
        if config.demo and plan.listen > 0 and teacher is None:
            # Without an intro teacher a policy conditioned on beats of "no chord" tends to stay silent (the
            # shipped MLE model does): the demo comps from the first beat instead.
            s = replace(s, plan=replace(plan, listen_beats=0))
            note = "demo: no intro teacher is shipped, so the chords start at once"
        header = {"programs": config.programs, "input": "demo" if config.demo else "live", "app": "desktop"}
        follower, clock_out = self.clocks(s) if self.clocks is not None else (None, [])
        if follower is not None and not hasattr(follower, "set_tempo"):  # a MIDI clock (Link runs at once)
            note = (note + "; " if note else "") + "waiting for the external clock's Start"
        running = open_jam(JamRequest(policy, s, self.sessions_dir(), self.sinks, teacher, header=header,
                                      on_fault=lambda _: self._faulted.emit(), clock=follower, clock_out=clock_out))
        self.router.session = session = running.session
        _, bar = beat_frames(s.meter)
        self.metronome.start(lambda: session.clock, s.meter, round(s.count_in_beats * 4), drummer=s.drums != "off")
        if config.demo:
            self.demo.start(lambda: session.clock, bar)
        info = {"model": policy.bundle.name, "teacher": teacher.bundle.name if teacher else None,
                "journal": str(running.recorder.path), "note": note}
        return running, info

    def _started(self, result: tuple[RunningJam, dict]) -> None:
        self.running, info = result
        self.session = self.running.session
        self._set(RUNNING)
        self.started.emit(info)
        if self.session.failed.is_set():  # it failed while starting: its signal came before RUNNING
            self.stop()

    def _stop_after_fault(self) -> None:
        """The jam failed by itself: stop and save it (``_stopped`` then says why)."""
        self.stop()

    def _start_failed(self, e: BaseException) -> None:
        self._set(IDLE)
        self.failed.emit(f"cannot start the jam: {e}")

    def stop(self) -> bool:
        if self.state != RUNNING:
            return False
        running = self.running
        self._set(STOPPING)
        self.bg.submit("jam", lambda: self._stop(running), self._stopped, self._stop_failed)
        return True

    def _stop(self, running: RunningJam) -> tuple[dict, Path]:
        self.demo.stop()
        self.router.drain(0.5)  # the last notes played reach the jam (and the recording) first
        self.router.session = None
        self.metronome.stop()
        summary, saved = running.finish()  # into the sessions folder, beside its journal
        if running.session.fault is not None:  # the take is saved first, then the fault is said
            summary = summary | {"error": str(running.session.fault)}
        return summary, saved

    def _stopped(self, result: tuple[dict, Path]) -> None:
        self.last_summary, self.last_saved = result
        self.session = self.running = None
        self._set(IDLE)
        summary, saved = result
        if summary.get("error"):
            self.failed.emit(f"{summary['error']}; the take so far is saved as {saved.name}")
        self.stopped.emit(*result)

    def _stop_failed(self, e: BaseException) -> None:
        self.session = self.running = None
        self._set(IDLE)
        self.failed.emit(f"the jam stopped with an error: {e}")
        self.stopped.emit({}, None)

    # --- while it runs -----------------------------------------------------------------------------------

    def snapshot(self) -> JamSnapshot | None:
        session = self.session
        if self.state not in (RUNNING, STOPPING) or session is None or session.clock is None:
            return None
        return session.snapshot()

    def sounding(self) -> tuple[int | None, tuple[int, ...]]:
        """The AI's bass and chord notes sounding now, for the on-screen keyboard."""
        session = self.session
        v = session.performer.sounding if session is not None else None
        return (v.bass, v.notes) if v is not None else (None, ())

    def switch_model(self, path: str) -> None:
        """Mid-jam: load off the GUI thread, take over at the next bar line. Idle: just preload it."""
        if self.state != RUNNING:
            self.bg.submit("models", lambda: self.models.policy(path), on_error=lambda e: self.failed.emit(str(e)))
            return

        def job() -> tuple[str, int] | None:
            policy = self.models.policy(path)
            session = self.session
            if session is None or self.state != RUNNING:
                return None
            frame = session.next_bar_frame()
            session.switch_model(policy, at_frame=frame)
            return policy.bundle.name, frame

        def done(result: tuple[str, int] | None) -> None:
            if result is not None:
                self.model_switched.emit(*result)

        self.bg.submit("models", job, done, lambda e: self.failed.emit(f"model not switched: {e}"))

    def set_tempo(self, bpm: float) -> None:
        """A running jam on its own clock goes to ``bpm`` at the next beat (the clock sent out follows)."""
        session = self.session
        if self.state == RUNNING and session is not None and session.clock is not None:
            if abs(session.clock.bpm_at(time.monotonic()) - bpm) > 1e-9:
                session.set_tempo(bpm)

    def panic(self) -> None:
        """Silence everything now: the sounding chord, every sink (MIDI out: note-offs + all-notes-off)."""
        session = self.session

        def run() -> None:
            if session is not None:
                session.panic()
            else:
                for sink in self.sinks:
                    sink.all_off()

        threading.Thread(target=run, name="comper-panic", daemon=True).start()
