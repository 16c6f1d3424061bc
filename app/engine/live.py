"""The live jam: the player's notes in, chords out on the beat grid, everything recorded as it happens.

Three threads, so that nothing slow sits between the clock and the sound:

* the **input** callback (the MIDI port's reader) echoes the player's notes at once and quantizes a copy to the
  nearest frame for the model (the player's pedals, bends and other controllers are echoed and recorded, not
  fed to the model);
* the **scheduler** wakes on the frame grid (at real-time priority where the OS allows: on a busy machine a
  normal thread wakes up to several ms late): at the start of frame g it plays the chord promised for g, half a
  frame later (when no note can round into g any more) it hands frame g to the planner. It never waits for the
  model: if the plan for g is not there in time (a *deadline miss*, counted), it holds the chord that sounds and
  tells the planner, which rewrites its history to match what was heard;
* the **planner worker** runs the model (``Planner.advance``) and publishes the promised chords.

A further housekeeping thread checks the MIDI ports once a second (unplug, replug) and journals the counters.

The clock is the jam's own ``FrameClock`` (``set_tempo`` replaces it with one that changes tempo at the next beat;
``clock_out`` ports get it as MIDI clock, ``midi/clock.py``) or an external MIDI clock's ``ClockFollower``
(``follow.py``: its Stop pauses the jam and releases the chord) or an Ableton Link session's ``LinkClock``
(``link.py``: ``set_tempo`` sets the session's tempo). The scheduler reads it again at every wait, and a
frame whose whole time has passed when it gets there (the external clock resumed further on) is counted as played
but not struck, so nothing sounds in a burst. The recording keeps the grid the take ran on: a tempo change is
journaled where it starts, an external clock's frames each with its time, so the saved file keeps every beat.

A fault in any of them (NaN or inf logits, an onnxruntime error, a crashed thread) stops the jam at once: the
sounding chord is released, ``failed`` is set and ``fault`` says why in one line (``PlannerError``); the owner then
calls ``stop()`` and saves the take. Before, a dead planner left the scheduler holding its last chord for ever,
counting deadline misses, and ``stop()`` raised before the take was saved.
"""

from __future__ import annotations

import bisect
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..errors import ComperError
from .arrange import Arrangement
from .bundle import BundleError
from .clock import FRAMES_PER_BEAT, FrameClock, wait_for
from .melody import MelodyTrack
from .options import JamSettings
from .performer import ChordPerformer, Sink
from .planner import Planner, PlanSettings
from .policy import OnnxPolicy

_SPIN_S = 0.0015  # the last stretch before a deadline is spun, not slept: sleep overshoots by up to ~1 ms
_RT_PRIORITY = 2  # SCHED_FIFO priority of the scheduler thread: above every normal thread, below JACK's (10+)


class PlannerError(ComperError, RuntimeError):
    """The jam stopped because the planner or one of its threads failed; the message is one line saying why."""


@dataclass(frozen=True)
class JamSnapshot:
    """What a view needs, copied under the locks so it can be drawn at leisure on another thread."""

    position: float  # the clock's fractional frame now (negative during the count-in)
    bpm: float
    meter: tuple[int, int]
    listen: int  # frames of listen-first intro
    chords: list[tuple[int, int, bool]]  # (frame, chord token, committed) around now: played, promised, tentative
    notes: list[tuple[int, int, int | None]]  # the player's notes as heard: (pitch, on frame, off frame or None)
    stats: dict
    model: str
    key: str = ""  # the key the steering hears (or was fixed to); "" before any melody or with key steering off


@dataclass
class JamStats:
    frames: int = 0
    chords: int = 0
    deadline_misses: int = 0
    plan_ms: list[float] = field(default_factory=list)
    onset_error_ms: list[float] = field(default_factory=list)  # chord note-on time minus its grid time
    model_switches: int = 0
    realtime_scheduler: bool = False  # whether the OS granted the scheduler thread real-time priority
    skipped_frames: int = 0  # frames whose whole time had passed when the scheduler got to them: not struck
    # sorted copies, kept as values arrive: summary() (every second, and by views) must not sort an hour's
    # worth of values while holding the GIL the scheduler needs at the next frame
    _plan_sorted: list[float] = field(default_factory=list, repr=False)
    _onset_sorted: list[float] = field(default_factory=list, repr=False)

    def add_plan(self, ms: float) -> None:
        self.plan_ms.append(ms)
        bisect.insort(self._plan_sorted, ms)

    def add_onset(self, ms: float) -> None:
        self.onset_error_ms.append(ms)
        bisect.insort(self._onset_sorted, ms)

    def summary(self) -> dict:
        return {"frames": self.frames, "chords": self.chords, "deadline_misses": self.deadline_misses,
                "model_switches": self.model_switches, "realtime_scheduler": self.realtime_scheduler,
                "skipped_frames": self.skipped_frames,
                "plan_ms_median": _median(self._plan_sorted), "plan_ms_p99": _p99(self._plan_sorted),
                "onset_error_ms_median": _median(self._onset_sorted), "onset_error_ms_p99": _p99(self._onset_sorted)}


def _median(xs: list[float]) -> float:
    """``statistics.median`` of sorted values, in O(1)."""
    n = len(xs)
    if n == 0:
        return 0.0
    return float(xs[n // 2]) if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _p99(xs: list[float]) -> float:
    """``statistics.quantiles(xs, n=100)[98]`` (the default 'exclusive' method) of sorted values, in O(1)."""
    n = len(xs)
    if n < 2:
        return float(xs[0]) if xs else 0.0
    m = n + 1
    j = min(max(99 * m // 100, 1), n - 1)
    delta = 99 * m - j * 100
    return (xs[j - 1] * (100 - delta) + xs[j] * delta) / 100


def jam_planner(policy: OnnxPolicy, plan: PlanSettings, meter: tuple[int, int], teacher=None) -> Planner:
    """The planner of a jam (live or re-jammed) in ``meter``: the harmonic-rhythm grid follows the meter, frame 0
    is on a bar line, and ``teacher`` (an ``OnnxTeacher``, or None) fills the intro's context chords."""
    intro = teacher.intro_filler(plan.seed, plan.temperature) if teacher is not None else None
    bar_beats = meter[0] * 4 / meter[1]
    return Planner(policy, replace(plan, bar_beats=bar_beats, downbeat_frame=0), intro=intro)


def realtime_priority(priority: int = _RT_PRIORITY) -> bool:
    """Run the calling thread at real-time (SCHED_FIFO) priority, as audio apps run their clock: a machine busy
    with other work then still wakes it on time. False where the OS has no such call or does not allow it
    (Linux needs root or an rtprio limit, e.g. the ``audio`` group's)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread
    except (AttributeError, OSError):
        return False
    return True


def wait_until(deadline: float, stop: threading.Event, spin: float = _SPIN_S) -> bool:
    """Sleep, then spin the last ``spin`` seconds, until ``time.monotonic() >= deadline``; False if stopped."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return not stop.is_set()
        if left > spin:
            if stop.wait(left - spin):
                return False


class JamSession:
    """One jam. ``start()``, feed ``on_note`` from the keyboard, ``stop()``; ``switch_model`` at any time."""

    def __init__(self, policy: OnnxPolicy, settings: JamSettings, sinks: list[Sink], recorder=None,
                 teacher=None, ports: list | None = None, planner: Planner | None = None) -> None:
        """``planner``: one ``jam_planner`` made beforehand (its first model calls are the slow part of starting
        a jam), else made here; ``recorder``: the journal the jam is written into, None for none."""
        self.s, self.sinks, self.recorder, self.ports = settings, list(sinks), recorder, list(ports or [])
        self.teacher = teacher
        self.planner = planner or self._new_planner(policy)
        self.vocab = self.planner.vocab
        self.performer = ChordPerformer(self.vocab, self.sinks, recorder, settings.voicing,
                                        settings.chord_velocity, settings.bass_velocity, Arrangement.of(settings),
                                        (settings.dynamics_low, settings.dynamics_high))
        self.melody = MelodyTrack()
        self.stats = JamStats()
        self.clock: FrameClock | None = None
        self.tentative: dict[int, int] = {}  # beyond the commit horizon: for display
        self.fault: PlannerError | None = None  # why the jam stopped by itself (set once, with ``failed``)
        self.failed = threading.Event()
        self.on_fault: Callable[[PlannerError], None] | None = None  # told at once, on the failing thread
        self._schedule: dict[int, int] = dict(self.planner.committed)  # frame -> promised chord token
        self.played: list[int] = []  # the chord token that sounded at every frame
        self.heard: list[tuple[int, bool]] = []  # (top pitch or -1, onset) of every frame, as the model heard it
        self._forced: dict[int, int] = {}  # frames the scheduler had to decide itself (late plans)
        self._lock = threading.Lock()
        self._melody_lock = threading.Lock()
        self._frames: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pending_switch: tuple[int, OnnxPolicy] | None = None
        self.clock_out: list = []  # MidiOutputs that get the jam's own clock (24 PPQN, Start / Stop): set before start
        self._clock_sender = None

    def _new_planner(self, policy: OnnxPolicy) -> Planner:
        return jam_planner(policy, self.s.plan, self.s.meter, self.teacher)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def make_clock(self, now: float | None = None) -> FrameClock:
        """The clock a jam starting ``now`` would run on: frame 0 after the count-in."""
        return FrameClock.starting_now(self.s.bpm, self.s.count_in_beats, now)

    def start(self, clock: FrameClock | None = None) -> FrameClock:
        """Start the clock (or run on ``clock``, e.g. one whose frame-0 time the recording already holds) and the
        threads; returns the clock."""
        self.clock = clock or self.make_clock()
        if getattr(self.clock, "external", False):
            self.clock.listeners.append(self._on_transport)
        elif self.clock_out:
            from ..midi.clock import ClockSender  # lazily: only a jam that sends clock needs it

            self._clock_sender = ClockSender(self.clock_out, lambda: self.clock,
                                             priority=realtime_priority if self.s.realtime else None)
            self._clock_sender.start()
        for target, name in ((self._scheduler, "scheduler"), (self._worker, "planner"),
                             (self._housekeeping, "housekeeping")):
            t = threading.Thread(target=self._guarded, args=(target, name), name=f"comper-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self.clock

    def stop(self) -> dict:
        """Stop the threads, silence everything we started and journal the final counters; returns them. The owner
        then saves the recording (``Recorder.save`` closes the journal once the files are written). A fault does
        not raise here (``fault`` says what it was), so the take is always saved first."""
        self._stop.set()
        self._frames.put(None)
        if self._clock_sender is not None:
            self._clock_sender.stop()  # a following DAW or drum machine stops too
        if getattr(self.clock, "external", False) and self._on_transport in self.clock.listeners:
            self.clock.listeners.remove(self._on_transport)
        for t in self._threads:
            t.join(timeout=5)
        now = time.monotonic()
        frame = self.clock.nearest_frame(now) if self.clock else 0
        self.performer.release(frame, now)
        with self._melody_lock:
            held = [n[0] for n in self.melody.notes if n[2] is None]
            for pitch in held:
                self._thru_off(pitch)
                if self.recorder is not None:
                    self.recorder.melody_off(frame, now, pitch)
        for sink in self.sinks:
            sink.all_off()
        summary = self.summary()
        if self.recorder is not None:
            self.recorder.stats(**summary)
        return summary

    def set_tempo(self, bpm: float) -> int | None:
        """The jam's own clock at ``bpm`` from the next beat on, without stopping (the clock sent out follows);
        returns that beat's frame. None: no clock yet, or an external clock, whose tempo is its source's."""
        clock = self.clock
        if hasattr(clock, "set_tempo"):  # an Ableton Link session (``link.LinkClock``): every peer follows
            return clock.set_tempo(bpm)  # its frames' times are journaled one by one (``external``)
        if not isinstance(clock, FrameClock):
            return None
        beat = (math.floor(clock.position(time.monotonic()) / FRAMES_PER_BEAT) + 1) * FRAMES_PER_BEAT
        self.clock = clock.with_tempo(bpm, beat)  # frames before the beat keep their times: waits stay valid
        if self.recorder is not None:  # the saved file's tempo map changes there too
            self.recorder.tempo(beat, self.clock.time_of(beat), bpm)
        return beat

    def _on_transport(self, what: str, t: float) -> None:
        """An external clock's Stop pauses the jam (the scheduler waits for the clock): what sounds is released,
        the take goes on when the clock runs again."""
        if what == "stop":
            self.performer.release(max(0, self.clock.nearest_frame(t)), t)

    def summary(self) -> dict:
        self.stats.chords = self.performer.chords_struck
        return self.stats.summary()

    def panic(self) -> None:
        """Silence everything now (stuck notes on a synth, a confused MIDI device); the jam goes on."""
        now = time.monotonic()
        self.performer.release(self.clock.nearest_frame(now) if self.clock else 0, now)
        for sink in self.sinks:
            sink.all_off()

    def switch_model(self, policy: OnnxPolicy, at_frame: int | None = None) -> None:
        """Continue with another model from ``at_frame`` (e.g. the next bar's first frame; None: now). The chord
        sounding then is released and promised chords stay promised: no stuck notes, no broken promise."""
        if at_frame is None or self.clock is None:
            self._frames.put(("switch", policy))
        else:
            with self._lock:
                self._pending_switch = (at_frame, policy)

    def next_bar_frame(self) -> int:
        """The first frame of the next bar (for a switch that waits for the bar line)."""
        bar = self.s.meter[0] * 4 * 4 // self.s.meter[1]
        now = max(0, self.clock.nearest_frame(time.monotonic())) if self.clock else 0
        return (now // bar + 1) * bar

    def snapshot(self, past_frames: int = 64) -> JamSnapshot:
        now = time.monotonic()
        pos = self.clock.position(now) if self.clock else -1.0
        bpm = self.clock.bpm_at(now) if self.clock else self.s.bpm
        with self._lock:
            first = max(0, len(self.played) - past_frames)
            chords = [(first + i, tok, True) for i, tok in enumerate(self.played[first:])]
            chords += [(g, tok, True) for g, tok in sorted(self._schedule.items()) if g >= len(self.played)]
            chords += [(g, tok, False) for g, tok in sorted(self.tentative.items()) if g >= len(self.played)]
        with self._melody_lock:
            notes = [(p, on, off) for p, on, off in self.melody.notes]
        key = self.planner.steer.key  # a reference read: the planner thread replaces it, never mutates it
        return JamSnapshot(pos, bpm, self.s.meter, self.s.plan.listen, chords, notes, self.summary(),
                           self.planner.policy.bundle.name, key.name if key else "")

    # --- input ----------------------------------------------------------------------------------------------

    def on_note(self, ev) -> None:
        """A NoteEvent from the keyboard (any thread): sounds at once, and is quantized for the model. A
        ControlEvent (sustain, mod wheel, pitch bend, pressure) sounds at once on the melody part and is recorded;
        the model does not hear it."""
        if ev.kind == "control":
            self._on_control(ev)
            return
        if ev.kind == "on":
            self.performer.hear(ev.velocity)  # the band's dynamics follow the player
            for sink in self.sinks:
                if sink.thru:
                    sink.note_on("melody", ev.pitch, ev.velocity)
        else:
            self._thru_off(ev.pitch)
        if self.clock is None:
            return
        frame = max(0, self.clock.nearest_frame(ev.time))
        with self._melody_lock:
            if ev.kind == "on":
                self.melody.note_on(ev.pitch, frame)
            else:
                self.melody.note_off(ev.pitch, frame)
        if self.recorder is not None:
            if ev.kind == "on":
                self.recorder.melody_on(frame, ev.time, ev.pitch, ev.velocity)
            else:
                self.recorder.melody_off(frame, ev.time, ev.pitch)

    def _on_control(self, ev) -> None:
        for sink in self.sinks:
            control = getattr(sink, "control", None)
            if sink.thru and control is not None:
                control("melody", ev.status, ev.data)
        if self.clock is not None and self.recorder is not None:
            self.recorder.melody_control(max(0, self.clock.nearest_frame(ev.time)), ev.time, ev.status, ev.data)

    def _thru_off(self, pitch: int) -> None:
        for sink in self.sinks:
            if sink.thru:
                sink.note_off("melody", pitch)

    # --- the scheduler --------------------------------------------------------------------------------------

    def _scheduler(self) -> None:
        g = 0  # the clock is read again at every wait: a tempo change or an external clock moves it
        self.stats.realtime_scheduler = self.s.realtime and realtime_priority()
        while self._wait_frame(g):
            self._play(g, strike=time.monotonic() < self.clock.time_of(g + 1))
            if not self._play_pending(self.clock.time_of(g + 0.5)):
                break
            if not self._wait_frame(g + 0.5, spin=0.0):  # the hand-off needs no precision
                break
            with self._melody_lock:
                pitch, onset = self.melody.frame(g)
                self.melody.prune(g - 64)  # recent notes stay for the view; the scan stays short
            self.heard.append((pitch, onset))
            self._frames.put((g, pitch, onset))
            if not self._play_pending(self.clock.time_of(g + 1)):
                break
            g += 1

    def _wait_frame(self, frame: float, spin: float = _SPIN_S) -> bool:
        """Until the clock reaches ``frame``, its time read again every few ms (``clock.wait_for``): a tempo
        change or an external clock's ticks move it, a stopped external clock holds it (``inf``)."""
        return wait_for(lambda: self.clock.time_of(frame), self._stop, spin)

    def _play_pending(self, before: float) -> bool:
        """Sound the notes a style's swing or humanize puts later in this frame (due before ``before``), each at
        its time; False if stopped. Most frames have none."""
        while (at := self.performer.next_pending()) is not None and at < before:
            if not wait_until(at, self._stop):
                return False
            self.performer.play_pending(at)
        return True

    def _play(self, g: int, strike: bool = True) -> None:
        """Play frame ``g``'s chord; ``strike`` False: its whole time has passed (an external clock resumed further
        on, the machine slept), so it counts as played without sounding, and nothing is struck in a burst."""
        with self._lock:
            if self._pending_switch is not None and self._pending_switch[0] <= g:
                self._frames.put(("switch", self._pending_switch[1]))
                self._pending_switch = None
            tok = self._schedule.pop(g, None)
            if tok is None and not self.planner.is_planned(g):
                tok = self.vocab.hold(self.played[-1] if self.played else self.vocab.silence)
                self._forced[g] = tok
                self.stats.deadline_misses += 1
            elif tok is None:
                tok = self.planner.chord_for(g)
            elif g < self.s.plan.listen:
                tok = self.vocab.silence
            self.played.append(tok)
        t = self.clock.time_of(g)
        if self.recorder is not None and getattr(self.clock, "external", False) and math.isfinite(t):
            self.recorder.grid(g, t)  # an external clock's frames have no tempo known ahead: the file needs each
        if not strike:
            self.stats.skipped_frames += 1
            return
        if self.performer.play(g, t, tok, self.clock.time_of(g + 1) - t):
            self.stats.add_onset((time.monotonic() - t) * 1000)

    # --- the planner worker ---------------------------------------------------------------------------------

    def _worker(self) -> None:
        while (item := self._frames.get()) is not None:
            if item[0] == "switch":
                self._switch(item[1])
                continue
            g, pitch, onset = item
            with self._lock:
                forced, self._forced = self._forced, {}
            for frame, tok in sorted(forced.items()):
                self.planner.override(frame, tok)
            result = self.planner.advance(pitch, onset)
            with self._lock:
                for frame, tok in result.committed.items():
                    if frame >= len(self.played):
                        self._schedule[frame] = tok
                self.tentative = result.tentative
                listen = self.s.plan.listen  # as _play will play them: silence in the intro
                promised = {f: self.vocab.silence if f < listen else tok for f, tok in self._schedule.items()}
            self.performer.prepare(promised)  # the frames' notes, worked out here: the scheduler only looks up
            self.stats.frames += 1
            self.stats.add_plan(result.seconds * 1000)
            if self.recorder is not None:
                self.recorder.melody_token(g, self.planner.history[-1][1])
            if self._frames.empty():
                self.planner.idle()  # after the plan is out, and only when no frame waits

    def _switch(self, policy: OnnxPolicy) -> None:
        new = self._new_planner(policy)
        new.take_over(self.planner)
        self.planner = new
        self.stats.model_switches += 1
        now = time.monotonic()
        self.performer.release(self.clock.nearest_frame(now), now)

    # --- faults ---------------------------------------------------------------------------------------------

    def _guarded(self, target: Callable[[], None], what: str) -> None:
        """Run one of the jam's threads; if it dies, the whole jam stops and says why (``_fail``)."""
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - any death of a jam thread is a fault the player must hear of
            self._fail(what, e)

    def _fail(self, what: str, error: BaseException) -> None:
        """Stop the clock and the planner, silence what sounds now, and tell the owner (``failed``, ``on_fault``)."""
        if self.fault is None:
            reason = str(error) if isinstance(error, BundleError) else f"{type(error).__name__}: {error}"
            line = (reason.strip().splitlines() or [type(error).__name__])[0]
            self.fault = PlannerError(f"the jam stopped at frame {len(self.played)}: the {what} failed: {line}")
            self.fault.__cause__ = error
        self._stop.set()
        self._frames.put(None)
        for t in self._threads:  # the others end within a model call; then nothing strikes after the release
            if t is not threading.current_thread():
                t.join(timeout=1)
        try:
            self.panic()
        except Exception:  # noqa: BLE001 - a sink that fails here is tried again by stop()
            pass
        self.failed.set()
        if self.on_fault is not None:
            self.on_fault(self.fault)

    # --- housekeeping ---------------------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        while not self._stop.wait(1.0):
            for port in self.ports:
                try:
                    port.check()
                except Exception:  # noqa: BLE001 - a flaky backend must not end the jam
                    pass
            if self.recorder is not None and not self.recorder.closed:
                self.recorder.stats(**self.summary())
