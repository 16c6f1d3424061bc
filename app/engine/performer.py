"""From chord tokens to sound: voiced notes on the outputs (built-in synth, MIDI port) and in the recording.

The planner speaks in tokens, one per frame; a musician hears chords struck and released. The performer strikes
a chord when its identity changes or the token is an onset (a re-strike), holds it across hold tokens, and owes
every note-on its note-off: ``release`` ends whatever sounds (stop, model switch, panic), and the outputs keep
their own books too (``MidiOutput.panic``, ``BuiltinSynth.all_notes_off``).
"""

from __future__ import annotations

import threading
from typing import Protocol

from .vocab import Vocabulary
from .voicing import Voicing, VoicingSettings, voice

PARTS = {"melody": 0, "chords": 1, "bass": 2}  # MIDI channels (0-based), the same on the synth and MIDI out


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


class ChordPerformer:
    """Plays one chord token per frame on every sink and records what sounded. Thread-safe."""

    def __init__(self, vocab: Vocabulary, sinks: list[Sink], recorder=None,
                 voicing: VoicingSettings = VoicingSettings(), velocity: int = 72, bass_velocity: int = 84) -> None:
        self.vocab, self.sinks, self.recorder = vocab, list(sinks), recorder
        self.voicing_settings, self.velocity, self.bass_velocity = voicing, velocity, bass_velocity
        self.sounding: Voicing | None = None
        self.sounding_chord: int | None = None  # the chord index sounding (None: silence)
        self.last_voicing: Voicing | None = None  # for voice leading across rests
        self.chords_struck = 0
        self._lock = threading.RLock()

    def play(self, frame: int, t: float, token: int) -> bool:
        """The chord of ``frame`` (sounding from clock time ``t``); returns True when something was struck."""
        info = self.vocab.chord_info.get(token)
        chord = info.chord if info else None
        with self._lock:
            if chord == self.sounding_chord and not (info and info.is_onset):
                return False  # a hold (or more silence): nothing changes
            self._release_notes()
            if info is None:
                self.sounding_chord = None
                if self.recorder is not None:
                    self.recorder.chord(frame, t, None, [], None, True, token)
                return False
            v = voice(info.root, info.pitch_classes, self.voicing_settings,
                      self.last_voicing if self.voicing_settings.voice_leading else None)
            for sink in self.sinks:
                if v.bass is not None:
                    sink.note_on("bass", v.bass, self.bass_velocity)
                for p in v.notes:
                    sink.note_on("chords", p, self.velocity)
            self.sounding, self.sounding_chord, self.last_voicing = v, chord, v
            self.chords_struck += 1
            if self.recorder is not None:
                self.recorder.chord(frame, t, info.symbol, list(v.notes), v.bass, True, token)
            return True

    def release(self, frame: int | None = None, t: float | None = None) -> None:
        """End the sounding chord now (stop, model switch); the next frame strikes whatever it holds."""
        with self._lock:
            had = self.sounding is not None
            self._release_notes()
            self.sounding_chord = None
            if had and self.recorder is not None and frame is not None and t is not None:
                self.recorder.chord(frame, t, None, [], None, True, self.vocab.silence)

    def _release_notes(self) -> None:
        v, self.sounding = self.sounding, None
        if v is None:
            return
        for sink in self.sinks:
            for p in v.notes:
                sink.note_off("chords", p)
            if v.bass is not None:
                sink.note_off("bass", v.bass)
