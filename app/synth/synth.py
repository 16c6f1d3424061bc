"""The live built-in synth: FluidSynth playing melody, chords and bass on three GM channels.

Starting never fails the app. ``start()`` probes audio drivers in order and keeps the first that REALLY opened:
``new_fluid_audio_driver`` returned a non-NULL pointer (pyfluidsynth's ``Synth.start()`` cannot tell, it returns
``FLUID_OK`` even when that pointer is NULL, which is what happens on a machine without a sound card). If no driver
opens, the synth enters ``state == "silent"`` with a one-line ``reason`` built from FluidSynth's own error
messages, e.g. ``no audio output (pulseaudio: Failed to create PulseAudio connection ...; alsa: Failed to open the
"default" audio device; jack: Failed to connect to Jack server.)``; the UI shows it, and chords still go to MIDI out.
A missing FluidSynth library or soundfont is the same: silent, with the reason.

Probe details (measured on a Debian 12 machine without sound card: the whole probe takes ~10 ms):
* only drivers compiled into this FluidSynth build are tried (FluidSynth accepts any name in its settings);
* ``file`` is never probed: it "opens" by writing ``fluidsynth.wav`` into the current folder;
* ``JACK_NO_START_SERVER=1`` is set during the probe unless the user set it: otherwise libjack tries to launch
  ``jackd -d alsa`` itself, which takes ~6 s to fail without a sound card (a running JACK server is still used).

Every note-on gets its note-off: the synth keeps the set of sounding (channel, pitch) and ``all_notes_off()``
releases them (stop, model switch, panic) besides sending FluidSynth's all-notes-off on every channel we use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from . import fluid
from .soundfont import SoundfontNotFound, find_soundfont

MELODY, CHORDS, BASS = 0, 1, 2
CHANNELS = {"melody": MELODY, "chords": CHORDS, "bass": BASS}
# GM programs (0-based): Acoustic Grand Piano, Electric Piano 1, Acoustic Bass.
DEFAULT_PROGRAMS = {MELODY: 0, CHORDS: 4, BASS: 32}

# Desktop sound servers first (they share the device), then raw device APIs, then the other platforms.
DRIVER_ORDER = (
    "pulseaudio", "pipewire", "alsa", "jack",
    "coreaudio", "wasapi", "dsound", "waveout", "sndman",
    "oss", "sdl3", "sdl2", "portaudio", "opensles", "oboe",
)
NEVER_PROBED = ("file",)
SUSTAIN, SOSTENUTO, RESET_ALL_CONTROLLERS = 64, 66, 121


def _channel(channel: int | str) -> int:
    ch = CHANNELS[channel.lower()] if isinstance(channel, str) else int(channel)
    if not 0 <= ch < 16:
        raise ValueError(f"MIDI channel out of range: {channel}")
    return ch


class BuiltinSynth:
    """FluidSynth on an audio driver, or a visible no-op in ``silent`` mode.

    ``state``: ``"stopped"`` (not started), ``"playing"`` (``driver`` says which), ``"silent"`` (``reason`` says
    why) or ``"closed"``. Safe to call from several threads (MIDI thru and the chord scheduler).
    """

    def __init__(self, soundfont: str | os.PathLike | None = None, *, programs: dict[int | str, int] | None = None,
                 gain: float = 0.4, sample_rate: float = 44100.0) -> None:
        self.soundfont_arg = soundfont
        self.soundfont: Path | None = None
        self.gain = gain
        self.sample_rate = float(sample_rate)
        self.programs: dict[int, int] = dict(DEFAULT_PROGRAMS)
        for ch, prog in (programs or {}).items():
            self.programs[_channel(ch)] = int(prog)
        self.state = "stopped"
        self.reason = ""
        self.driver: str | None = None
        self.tried: list[str] = []
        self._fs: ModuleType | None = None
        self._synth: Any = None
        self._sfid = -1
        self._sounding: set[tuple[int, int]] = set()
        self._controlled: set[int] = set()  # channels a controller, bend or pressure was sent on
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, driver: str | None = None) -> str:
        """Open audio output; returns the driver name that opened, or ``"silent"`` (then see ``reason``).

        ``driver`` picks one driver (no fallback); ``None`` probes ``DRIVER_ORDER``. Never raises for a missing
        library, soundfont or sound card. Calling it again restarts (e.g. after the user plugs in headphones).
        """
        with self._lock:
            self._teardown()
            try:
                fs = fluid.load()
                self.soundfont = find_soundfont(self.soundfont_arg)
            except (fluid.SynthUnavailable, SoundfontNotFound) as exc:
                return self._silent(str(exc))
            synth = fs.Synth(gain=self.gain, samplerate=self.sample_rate)
            with fluid.captured_log(fs) as log:
                sfid = synth.sfload(str(self.soundfont), 1)
                if sfid < 0:
                    synth.delete()
                    detail = f": {log[-1]}" if log else ""
                    return self._silent(f"cannot load soundfont {self.soundfont}{detail}")
                opened, failures = self._probe(fs, synth, driver, log)
            if opened is None:
                synth.delete()
                return self._silent("no audio output (" + "; ".join(failures) + ")")
            self._fs, self._synth, self._sfid = fs, synth, sfid
            for ch, prog in self.programs.items():
                synth.program_select(ch, sfid, 0, prog)
            self.state, self.reason, self.driver = "playing", "", opened
            return opened

    def _probe(self, fs: ModuleType, synth: Any, driver: str | None, log: list[str]) -> tuple[str | None, list[str]]:
        compiled = fluid.compiled_drivers(fs, synth.settings)
        if driver:
            candidates = [driver]
        else:
            candidates = [d for d in DRIVER_ORDER if not compiled or d in compiled]
        self.tried = candidates
        failures: list[str] = []
        own_env = "JACK_NO_START_SERVER" not in os.environ
        if own_env:
            os.environ["JACK_NO_START_SERVER"] = "1"
        try:
            for name in candidates:
                if compiled and name not in compiled:
                    failures.append(f"{name}: not in this FluidSynth build (has {', '.join(compiled)})")
                    continue
                seen = len(log)
                fs.fluid_settings_setstr(synth.settings, b"audio.driver", name.encode())
                ptr = fs.new_fluid_audio_driver(synth.settings, synth.synth)
                if ptr:  # the one real check: FluidSynth created the driver and its audio thread
                    synth.audio_driver = ptr
                    return name, failures
                why = log[-1] if len(log) > seen else "did not open"
                failures.append(f"{name}: {why}")
        finally:
            if own_env:
                os.environ.pop("JACK_NO_START_SERVER", None)
        if not candidates:
            failures.append(f"none of {', '.join(DRIVER_ORDER)} is in this FluidSynth build "
                            f"(has {', '.join(compiled) or 'none'})")
        return None, failures

    def _silent(self, reason: str) -> str:
        self.state, self.reason, self.driver = "silent", " ".join(reason.split()), None
        return "silent"

    def _teardown(self) -> None:
        if self._synth is not None:
            self._release_all()
            self._synth.delete()  # deletes the audio driver first, then the synth and its settings
        self._fs, self._synth, self._sfid = None, None, -1

    def close(self) -> None:
        """Release every sounding note and free FluidSynth; idempotent."""
        with self._lock:
            self._teardown()
            self._sounding.clear()
            self.state, self.driver = "closed", None

    def __enter__(self) -> BuiltinSynth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- playing ---------------------------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.state == "playing"

    def note_on(self, channel: int | str, pitch: int, velocity: int = 90) -> None:
        ch = _channel(channel)
        if not 0 <= pitch <= 127:
            return
        vel = max(1, min(127, int(velocity)))
        with self._lock:
            if self._synth is not None:
                self._synth.noteon(ch, int(pitch), vel)
            self._sounding.add((ch, int(pitch)))

    def note_off(self, channel: int | str, pitch: int) -> None:
        ch = _channel(channel)
        with self._lock:
            if self._synth is not None and 0 <= pitch <= 127:
                self._synth.noteoff(ch, int(pitch))
            self._sounding.discard((ch, int(pitch)))

    def control(self, channel: int | str, status: int, data: tuple[int, ...]) -> None:
        """A controller (``status`` 0xB0: (controller, value)), pitch bend (0xE0: (lsb, msb)), channel pressure
        (0xD0: (value,)) or poly pressure (0xA0: (pitch, value)) on a channel: the player's sustain pedal, mod
        wheel, bends. ``all_notes_off()`` lifts the pedals and resets them."""
        ch = _channel(channel)
        if not all(0 <= d <= 127 for d in data):
            return
        with self._lock:
            if self._synth is not None:
                fluid.channel_message(self._fs, self._synth, ch, status, tuple(int(d) for d in data))
            self._controlled.add(ch)

    def program_select(self, channel: int | str, program: int) -> None:
        """Set the GM program (0-127) of a channel; remembered across ``start()`` and silent mode."""
        ch = _channel(channel)
        if not 0 <= program <= 127:
            raise ValueError(f"GM program out of range: {program}")
        with self._lock:
            self.programs[ch] = int(program)
            if self._synth is not None:
                self._synth.program_select(ch, self._sfid, 0, int(program))

    def all_notes_off(self) -> None:
        """Note-off for everything sounding, on every channel (stop, model switch, port loss, panic); a pedal the
        player held is lifted and the controllers reset, so nothing rings on."""
        with self._lock:
            self._release_all()

    def _release_all(self) -> None:
        if self._synth is not None:
            for ch, pitch in sorted(self._sounding):
                self._synth.noteoff(ch, pitch)
            for ch in sorted({*self.programs, *(c for c, _ in self._sounding)}):
                self._synth.all_notes_off(ch)
            for ch in sorted(self._controlled):
                for controller in (SUSTAIN, SOSTENUTO):  # releases the voices the pedals hold
                    self._synth.cc(ch, controller, 0)
                self._synth.cc(ch, RESET_ALL_CONTROLLERS, 0)  # bend, pressure, mod wheel, soft pedal
        self._sounding.clear()
        self._controlled.clear()

    def sounding(self) -> set[tuple[int, int]]:
        """(channel, pitch) pairs that had a note-on and no note-off yet."""
        with self._lock:
            return set(self._sounding)
