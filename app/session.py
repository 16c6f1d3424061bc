"""Opening a jam, once for every front end: ``comper jam``, the desktop app, ``comper rejam`` and the benchmarks.
No Qt here.

``open_jam(JamRequest) -> RunningJam`` makes, in this order: the planner (its first model calls are the slow part
of a start), the clock (after it, so the count-in starts when the music can), the session header
(``SessionHeader``: how the take is made, as its journal and its sidecar say it), the journal's ``Recorder``, and
for a live jam the ``JamSession`` that writes into that recorder, started. ``RunningJam.finish()`` stops the jam
and saves the take; ``stop()`` and ``save()`` are its two halves (``comper jam`` stops while its signal guard is
up and saves after). A simulated jam (``JamRequest.simulated``: ``comper rejam``) has no threads and no session:
its caller steps ``planner`` and ``performer`` on ``clock``, frame by frame.

Beside it: the sessions folder (``sessions_dir``) and the crash recovery that runs before a new journal is opened
there (``recover_unfinished``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine.arrange import Arrangement
from .engine.clock import FrameClock
from .engine.live import JamSession, PlannerError, jam_planner
from .engine.options import JamSettings
from .engine.performer import ChordPerformer
from .engine.planner import Planner, PlanSettings
from .engine.voicing import VoicingSettings
from .recording import Recorder, Recovery, default_midi_path, recover_all


def sessions_dir() -> Path:
    """Where jams are journaled and saved: ``$COMPER_SESSIONS``, else ``~/Comper/sessions``."""
    return Path(os.environ.get("COMPER_SESSIONS", Path.home() / "Comper" / "sessions"))


def recover_unfinished(folder: str | os.PathLike | None = None) -> list[Recovery]:
    """Save what a crash left unfinished in ``folder`` (default: the sessions folder), each journal on its own,
    before a new jam opens one there (the app at start-up, ``comper jam`` before it plays)."""
    return recover_all(folder or sessions_dir())


@dataclass(frozen=True)
class SessionHeader:
    """How a take was made: the journal's header settings (and the sidecar's ``settings``). ``as_dict`` gives the
    keys these files have always had, so old and new files read alike; the last four only where they apply."""

    bpm: float
    meter: tuple[int, int]
    t0: float | None  # the clock time of frame 0
    model_name: str
    model_sha256: str | None
    seed: int
    plan: PlanSettings
    voicing: VoicingSettings
    teacher: str | None  # the intro-fill teacher's name
    mode: str  # "jam", "rejam" or "bench"
    programs: Mapping[str, int] | None = None  # the desktop app: GM programs of the melody, chords and bass
    input: str | None = None  # the desktop app: "live" or "demo"
    app: str | None = None  # "desktop"
    source: str | None = None  # a re-jam: the melody file
    band: Mapping[str, Any] | None = None  # how the band played: style, bass, drums, dynamics (engine/arrange.py)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.default is dataclasses.MISSING or getattr(self, f.name) is not None}
        return out | {"meter": list(self.meter)}


@dataclass
class JamRequest:
    """What a jam is made of. ``journal_dir``: where its journal is written (the sessions folder, the folder of
    ``--record``, a temporary one); ``header``: the header's optional fields (``programs``, ``input``, ``app``,
    ``source``); ``ports``: MIDI ports the jam checks once a second (unplug, replug)."""

    policy: Any  # an OnnxPolicy
    settings: JamSettings
    journal_dir: str | os.PathLike
    sinks: Sequence = ()
    teacher: Any = None  # an OnnxTeacher, or None
    ports: Sequence = ()
    mode: str = "jam"
    header: Mapping[str, Any] = field(default_factory=dict)
    on_fault: Callable[[PlannerError], None] | None = None  # told at once, on the failing engine thread
    simulated: bool = False  # a re-jam: no threads, the caller steps the planner on a clock starting at 0
    clock: Any = None  # an external clock to follow (``engine.follow.ClockFollower``); None: the jam's own
    clock_out: Sequence = ()  # MidiOutputs that get the jam's own clock (ignored when following one)


@dataclass
class RunningJam:
    header: SessionHeader
    recorder: Recorder
    clock: FrameClock
    planner: Planner
    performer: ChordPerformer
    session: JamSession | None  # None: a simulated jam
    summary: dict | None = None  # the final counters, once stopped

    def stop(self, **stats: Any) -> dict:
        """Stop once: a live jam's threads, with every note it started released and its final counters
        journaled; a simulated jam keeps ``stats``, its caller's counters. Returns the counters."""
        if self.summary is None:
            self.summary = self.session.stop() if self.session is not None else dict(stats)
        return self.summary

    def save(self, midi_path: str | os.PathLike | None = None) -> Path:
        """Write the take's MIDI file and sidecar (default: named after the journal, beside it), then close the
        journal. An ``OutputError`` leaves the journal unfinished: nothing played is lost (``comper recover``)."""
        return self.recorder.save(midi_path or default_midi_path(self.recorder.path), **(self.summary or {}))

    def finish(self, midi_path: str | os.PathLike | None = None, **stats: Any) -> tuple[dict, Path]:
        """Stop and save; (the counters, the MIDI file written)."""
        summary = self.stop(**stats)
        return summary, self.save(midi_path)

    def discard(self) -> dict:
        """Stop and close the journal unsaved (a benchmark's jam); returns the counters."""
        summary = self.stop()
        self.recorder.close()
        return summary


def band_settings(s: JamSettings) -> dict[str, Any]:
    """The band's settings as the header (and the sidecar's ``settings.band``) keeps them."""
    return {"style": s.style, "bass": s.bass, "drums": s.drums, "dynamics": [s.dynamics_low, s.dynamics_high]}


def open_jam(request: JamRequest) -> RunningJam:
    """Make the jam ``request`` describes and, unless it is simulated, start it (see the module's docstring)."""
    s, policy, teacher = request.settings, request.policy, request.teacher
    planner = jam_planner(policy, s.plan, s.meter, teacher)
    if request.simulated:
        clock = FrameClock(s.bpm, 0.0)
    else:
        clock = request.clock or FrameClock.starting_now(s.bpm, s.count_in_beats)
    t0 = clock.start if isinstance(clock, FrameClock) else None  # an external clock's frame 0 is not known yet
    header = SessionHeader(bpm=s.bpm, meter=tuple(s.meter), t0=t0, model_name=policy.bundle.name,
                           model_sha256=policy.bundle.card.onnx.sha256, seed=s.plan.seed, plan=s.plan,
                           voicing=s.voicing, teacher=teacher.bundle.name if teacher is not None else None,
                           mode=request.mode, band=band_settings(s), **request.header)
    recorder = Recorder(request.journal_dir, header.as_dict())
    if request.simulated:
        performer = ChordPerformer(planner.vocab, [], recorder, s.voicing, s.chord_velocity, s.bass_velocity,
                                   Arrangement.of(s), (s.dynamics_low, s.dynamics_high))
        return RunningJam(header, recorder, clock, planner, performer, None)
    session = JamSession(policy, s, request.sinks, recorder=recorder, teacher=teacher, ports=request.ports,
                         planner=planner)
    session.on_fault = request.on_fault
    session.clock_out = list(request.clock_out)
    try:
        session.start(clock)
    except BaseException:
        if session.clock is not None:  # some threads may run: they are stopped, every note released
            session.stop()
        recorder.close()
        raise
    return RunningJam(header, recorder, clock, planner, session.performer, session)
