"""The built-in synth as the app plays it: started off the GUI thread, switchable on and off mid-jam, with an
instrument and a volume per part, a metronome click, and a panic.

Volume is applied as velocity scaling in ``MixSink`` (the engine's synth has no channel-volume call yet); a part
at 0 % sends no note-ons, and note-offs always pass, so turning the synth or a part off never leaves a note stuck.
"""

from __future__ import annotations

import threading

from ..engine.drums import SIDE_STICK
from ..engine.performer import PARTS
from ..synth import BuiltinSynth

PERCUSSION = 9  # GM channel 10 (0-based 9): the drum kit
CLICK_ACCENT, CLICK_BEAT = 76, 77  # GM Hi / Low Wood Block
CLICK_VELOCITY = 100
STICKS_VELOCITY = {True: 118, False: 92}  # the drummer's count-in: downbeat, other beats


class SynthHost:
    """One BuiltinSynth for the app's lifetime; ``start`` (blocking: call it on a background lane) probes audio."""

    def __init__(self, soundfont: str = "", programs: dict[str, int] | None = None,
                 volumes: dict[str, int] | None = None, enabled: bool = True) -> None:
        self.synth = BuiltinSynth(soundfont or None, programs={PARTS[p]: v for p, v in (programs or {}).items()})
        self.enabled = enabled
        self.volumes = {part: 1.0 for part in PARTS}
        for part, v in (volumes or {}).items():
            self.set_volume(part, v)
        self._lock = threading.Lock()

    @property
    def status(self) -> str:
        """One line for the status bar."""
        s = self.synth
        if s.state == "playing":
            return f"synth: {s.driver}" + ("" if self.enabled else " (off)")
        if s.state == "silent":
            return f"synth silent: {s.reason}"
        return f"synth {s.state}"

    def start(self, soundfont: str | None = None) -> str:
        """(Re)open audio, optionally with another soundfont; returns the driver or "silent"."""
        with self._lock:
            if soundfont is not None:
                self.synth.soundfont_arg = soundfont or None
            return self.synth.start()

    def set_program(self, part: str, program: int) -> None:
        self.synth.program_select(PARTS[part], program)

    def set_volume(self, part: str, percent: int) -> None:
        self.volumes[part] = max(0, min(100, percent)) / 100.0

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        if not on:
            self.synth.all_notes_off()

    def click(self, accent: bool, sticks: bool = False) -> int | None:
        """A metronome click now; returns its pitch (to end it), or None when the synth is off. ``sticks``: the
        drummer counts in instead (a rim click, the downbeat louder), when the band has drums."""
        if not self.enabled:
            return None
        if sticks:
            self.synth.note_on(PERCUSSION, SIDE_STICK, STICKS_VELOCITY[accent])
            return SIDE_STICK
        pitch = CLICK_ACCENT if accent else CLICK_BEAT
        self.synth.note_on(PERCUSSION, pitch, CLICK_VELOCITY)
        return pitch

    def click_off(self, pitch: int) -> None:
        self.synth.note_off(PERCUSSION, pitch)

    def panic(self) -> None:
        self.synth.all_notes_off()

    def close(self) -> None:
        self.synth.close()


class MixSink:
    """The engine's view of the synth (a ``Sink``): parts scaled by their volume, nothing while switched off."""

    thru = True  # the player's own notes sound here: a MIDI keyboard without its own sound, or the laptop keys

    def __init__(self, host: SynthHost) -> None:
        self.host = host

    def note_on(self, part: str, pitch: int, velocity: int) -> None:
        gain = self.host.volumes[part]
        if self.host.enabled and gain > 0:
            self.host.synth.note_on(PARTS[part], pitch, max(1, round(velocity * gain)))

    def note_off(self, part: str, pitch: int) -> None:
        self.host.synth.note_off(PARTS[part], pitch)

    def control(self, part: str, status: int, data: tuple[int, ...]) -> None:
        self.host.synth.control(PARTS[part], status, data)  # like a note-off: a pedal lifted must get there

    def all_off(self) -> None:
        self.host.synth.all_notes_off()
