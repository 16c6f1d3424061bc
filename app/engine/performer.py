"""From chord tokens to sound: voiced notes on the outputs (built-in synth, MIDI port) and in the recording.

The planner speaks in tokens, one per frame; a musician hears a band. What each frame plays (the comping style's
hits, the bass line, the drums) is worked out by the arranger (``arrange.py``) ahead of time, from committed
chords only (``prepare``); playing a frame is a table look-up. The default arrangement (a sustained pad over a held
root, no drums) strikes a chord when its identity changes or the token is an onset and holds it across hold
tokens, as Comper always did. Velocities follow the player (``hear``: a smoothed level of their velocities) within
a settable range, with the bar's strong beats accented. The performer owes every note-on its note-off:
``release`` ends whatever sounds (stop, model switch, panic), and the outputs keep their own books too
(``MidiOutput.panic``, ``BuiltinSynth.all_notes_off``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Protocol

from .arrange import Arrangement, Arranger, ArrState, FramePlan
from .vocab import Vocabulary
from .voicing import Voicing, VoicingSettings

PARTS = {"melody": 0, "chords": 1, "bass": 2, "drums": 9}  # MIDI channels (0-based), the same on the synth and MIDI
# out; the drums on General MIDI's percussion channel (10)


class Sink(Protocol):
    """Somewhere notes sound. ``thru``: whether the player's own notes are echoed here. ``control``: a channel
    message of the player's (sustain, mod wheel, pitch bend, pressure: ``ControlEvent.status`` and ``data``) on a
    part; optional, a sink without it gets only notes."""

    thru: bool

    def note_on(self, part: str, pitch: int, velocity: int) -> None: ...

    def note_off(self, part: str, pitch: int) -> None: ...

    def control(self, part: str, status: int, data: tuple[int, ...]) -> None: ...

    def all_off(self) -> None: ...


class SynthSink:
    """The built-in FluidSynth synth (it also plays the player's notes: a keyboard without its own sound)."""

    def __init__(self, synth, thru: bool = True) -> None:
        self.synth, self.thru = synth, thru

    def note_on(self, part: str, pitch: int, velocity: int) -> None:
        self.synth.note_on(PARTS[part], pitch, velocity)

    def note_off(self, part: str, pitch: int) -> None:
        self.synth.note_off(PARTS[part], pitch)

    def control(self, part: str, status: int, data: tuple[int, ...]) -> None:
        self.synth.control(PARTS[part], status, data)

    def all_off(self) -> None:
        self.synth.all_notes_off()


class MidiSink:
    """A MIDI output port (another synth, a DAW). No thru by default: the keyboard usually sounds by itself."""

    def __init__(self, output, thru: bool = False) -> None:
        self.output, self.thru = output, thru

    def note_on(self, part: str, pitch: int, velocity: int) -> None:
        self.output.note_on(pitch, velocity, PARTS[part])

    def note_off(self, part: str, pitch: int) -> None:
        self.output.note_off(pitch, 0, PARTS[part])

    def control(self, part: str, status: int, data: tuple[int, ...]) -> None:
        self.output.control(status, data, PARTS[part])

    def all_off(self) -> None:
        self.output.panic()


class Dynamics:
    """How loud the band plays: each part's base velocity scaled by the player's recent velocity (smoothed, so one
    loud note does not jump the band), times the hit's accent, kept within ``low``..``high``."""

    NEUTRAL = 80  # a player at this velocity hears the base velocities

    def __init__(self, base: Mapping[str, int], low: int = 1, high: int = 127, smoothing: float = 0.2) -> None:
        self.base, self.smoothing = dict(base), smoothing
        self.low, self.high = min(low, high), max(low, high)
        self.level = float(self.NEUTRAL)

    def hear(self, velocity: int) -> None:
        """A note the player struck."""
        if velocity > 0:
            self.level += self.smoothing * (velocity - self.level)

    def velocity(self, part: str, gain: float = 1.0, jitter: int = 0) -> int:
        v = round(self.base.get(part, 90) * self.level / self.NEUTRAL * gain) + jitter
        return max(self.low, min(self.high, v))


class ChordPerformer:
    """Plays one chord token per frame on every sink, as the arrangement says, and records what sounded.
    Thread-safe: the planner's thread prepares frames, the scheduler plays them."""

    def __init__(self, vocab: Vocabulary, sinks: list[Sink], recorder=None,
                 voicing: VoicingSettings = VoicingSettings(), velocity: int = 72, bass_velocity: int = 84,
                 arrangement: Arrangement = Arrangement(), dynamics: tuple[int, int] = (1, 127)) -> None:
        self.vocab, self.sinks, self.recorder = vocab, list(sinks), recorder
        self.voicing_settings, self.velocity, self.bass_velocity = voicing, velocity, bass_velocity
        self.arrangement = arrangement
        self.arranger = Arranger(vocab, arrangement, voicing)
        self.dynamics = Dynamics({"chords": velocity, "bass": bass_velocity, "drums": 90}, *dynamics)
        self.state = ArrState()
        self.sounding_notes: dict[tuple[str, int], None] = {}  # (part, pitch) note-ons without their note-off yet
        self.pending: list[tuple[float, str, int, int]] = []  # (time, part, pitch, velocity): later in this frame
        self.prepared: dict[int, FramePlan] = {}
        self.upcoming: dict[int, int] = {}  # the committed tokens last given to ``prepare``
        self.next_frame = 0  # the frame ``play`` expects next
        self.precomputed = self.computed_late = 0  # frames played from the table / worked out when played
        self.chords_struck = 0
        self._lock = threading.RLock()

    @property
    def sounding(self) -> Voicing | None:
        """The voicing of the chord sounding now (None: silence)."""
        return self.state.voicing if self.state.chord is not None else None

    @property
    def sounding_chord(self) -> int | None:
        return self.state.chord

    @property
    def last_voicing(self) -> Voicing | None:
        return self.state.last_voicing

    def hear(self, velocity: int) -> None:
        """A note-on of the player's: the band's dynamics follow."""
        self.dynamics.hear(velocity)

    def prepare(self, committed: Mapping[int, int]) -> int:
        """Work out ahead the frames of ``committed`` (frame -> promised chord token, as it will sound: silence in
        the intro) whose plan is known far enough ahead; returns how many frames were added to the table. The work
        is done outside the lock (the scheduler never waits for it); a table the scheduler outran meanwhile is
        dropped, and those frames are worked out when played."""
        with self._lock:
            self.upcoming = dict(committed)
            first = g = self._chain_end()
            state = start = self._chain_state(g)
        plans = []
        while state is not None and g in committed and all(g + k in committed
                                                           for k in range(1, self.arranger.lookahead + 1)):
            plan = self.arranger.step(state, g, committed[g], committed)
            plans.append(plan)
            state, g = plan.after, g + 1
        with self._lock:
            if not plans or self._chain_end() != first or self._chain_state(first) is not start:
                return 0
            self.prepared.update((p.frame, p) for p in plans)
            return len(plans)

    def _chain_end(self) -> int:
        """The first frame the table does not hold yet."""
        return max([self.next_frame, *[f + 1 for f in self.prepared]])

    def _chain_state(self, g: int) -> ArrState | None:
        """The state frame ``g`` starts from, if known (None: the table has a gap before it)."""
        if g - 1 in self.prepared:
            return self.prepared[g - 1].after
        return self.state if g == self.next_frame else None

    def play(self, frame: int, t: float, token: int, frame_s: float | None = None) -> bool:
        """The chord of ``frame`` (sounding from clock time ``t``); returns True when a chord was struck. Notes a
        swing or humanize puts later in the frame wait in ``pending`` (``play_pending``) where there are sinks.

        ``frame_s``: how long this frame lasts on the clock now. The arranger works out swing at the jam's starting
        tempo, ahead of time; a tempo change since (the player's, a MIDI clock's, a Link session's) scales the
        offsets here, so a swung 8th stays at the same place in the beat."""
        with self._lock:
            self.play_pending(float("inf"))
            plan = self.prepared.pop(frame, None)
            if plan is None or plan.token != token or plan.before is not self.state:
                self.prepared.clear()  # the chain was made from another past: worked out again from here
                plan = self.arranger.step(self.state, frame, token, self.upcoming)
                self.computed_late += 1
            else:
                self.precomputed += 1
            for g in [g for g in self.prepared if g <= frame]:
                del self.prepared[g]
            self.state, self.next_frame = plan.after, frame + 1
            for part, pitch in plan.offs:
                self._off(frame, t, part, pitch)
            if plan.chord is not None and self.recorder is not None:
                symbol, notes, bass = plan.chord
                self.recorder.chord(frame, t, symbol, list(notes), bass, True, token, apart=True)
            scale = frame_s / self.arranger.frame_s if frame_s and math.isfinite(frame_s) and frame_s > 0 else 1.0
            for late, part, pitch, gain, jitter in plan.ons:
                late *= scale
                vel = self.dynamics.velocity(part, gain, jitter)
                if (part, pitch) in self.sounding_notes:
                    self._off(frame, t + late, part, pitch)
                self.sounding_notes[(part, pitch)] = None
                if self.recorder is not None:
                    self.recorder.note(frame, t + late, part, pitch, vel)
                if late <= 0:
                    for sink in self.sinks:
                        sink.note_on(part, pitch, vel)
                elif self.sinks:
                    self.pending.append((t + late, part, pitch, vel))
            self.pending.sort()
            if plan.struck:
                self.chords_struck += 1
            return plan.struck

    def next_pending(self) -> float | None:
        """The clock time of the next note still to sound in this frame (None: none)."""
        with self._lock:
            return self.pending[0][0] if self.pending else None

    def play_pending(self, until: float) -> None:
        """Sound the pending notes due by ``until`` (clock time)."""
        with self._lock:
            while self.pending and self.pending[0][0] <= until:
                _, part, pitch, vel = self.pending.pop(0)
                if (part, pitch) in self.sounding_notes:
                    for sink in self.sinks:
                        sink.note_on(part, pitch, vel)

    def release(self, frame: int | None = None, t: float | None = None) -> None:
        """End whatever sounds now (stop, model switch); the next frame strikes whatever it holds."""
        with self._lock:
            had = self.state.chord is not None
            self.pending.clear()
            for part, pitch in list(self.sounding_notes):
                self._off(frame, t, part, pitch)
            self.state = ArrState(last_voicing=self.state.last_voicing)
            self.prepared.clear()
            if had and self.recorder is not None and frame is not None and t is not None:
                self.recorder.chord(frame, t, None, [], None, True, self.vocab.silence, apart=True)

    def _off(self, frame: int | None, t: float | None, part: str, pitch: int) -> None:
        if self.sounding_notes.pop((part, pitch), False) is False:
            return
        for sink in self.sinks:
            sink.note_off(part, pitch)
        if self.recorder is not None and frame is not None and t is not None:
            self.recorder.note_off(frame, t, part, pitch)
