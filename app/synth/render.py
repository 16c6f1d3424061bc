"""Offline rendering: a MIDI file through FluidSynth into a 16-bit stereo WAV, faster than real time.

Why offline: it needs no sound card, so it is how tests prove a chord really sounds (render, then look for the
pitches' frequencies), and how a user exports a jam as audio. The MIDI file's events are walked in time order
(mido merges the tracks and applies tempo changes, giving seconds); between events the synth is stepped with
``get_samples`` for exactly the elapsed number of samples (the fractional remainder is carried, so a long file does
not drift), and the audio is streamed to the WAV in chunks, so an hour-long session needs no hour of memory.
A tail is rendered after the last event so releases and reverb ring out instead of being cut. The chunks go into
the output writer's temporary file (``app.recording.output``): a kill, a full disk or a bad input never leaves
part of a WAV under the target's name.

The input goes through the checks every user-named MIDI file does (``engine.midifile.load_midi``): with
``limits`` (``comper render`` passes them; a session the app recorded itself is rendered whatever its length) a
file too big or too long is refused before the soundfont loads or the WAV is opened; a tempo-0 event is dropped
with a warning (``RenderInfo.warnings``); a type-2 file plays its patterns in sequence (``in_sequence``).
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass, field
from pathlib import Path

import mido

from ..engine.midifile import InputLimits, check_minutes, in_sequence, load_midi
from ..errors import ComperError
from ..recording.output import WAV, check_target, write_together
from . import fluid
from .soundfont import find_soundfont

CHUNK = 4096  # samples per get_samples call (pyfluidsynth allocates the buffer each call)


class RenderError(ComperError, RuntimeError):
    """A file that cannot be rendered; the message is one line naming it."""


@dataclass(frozen=True)
class RenderInfo:
    wav_path: Path
    soundfont: Path
    sample_rate: int
    samples: int  # per channel
    notes: int  # note-ons played
    peak: int  # largest absolute 16-bit sample (0 means it rendered silence)
    warnings: list[str] = field(default_factory=list)  # what was odd in the input but repaired, one line each

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


def _load_midi(path: Path, limits: InputLimits | None = None) -> tuple[mido.MidiFile, list[str]]:
    """The file to play (type 2: its patterns in sequence) and the warnings; ``RenderError`` names a file that is
    unreadable, too big or too long."""
    mid, warnings = load_midi(path, limits, RenderError)
    mid = in_sequence(mid)
    try:
        seconds = mid.length  # walks the events once: cheap next to rendering them
    except Exception as exc:  # noqa: BLE001 - mido's own checks on odd files
        raise RenderError(f"{path}: cannot be played ({type(exc).__name__}: {exc})") from None
    check_minutes(path, seconds, limits, RenderError)
    return mid, warnings


def _stream(mid: mido.MidiFile, synth, out: wave.Wave_write, sample_rate: int, tail_seconds: float
            ) -> tuple[int, int, int]:
    """Play ``mid`` through ``synth`` into ``out``; returns (samples per channel, note-ons, peak)."""
    notes = peak = total = 0

    def step(n: int) -> None:
        nonlocal peak, total
        while n > 0:
            k = min(n, CHUNK)
            block = synth.get_samples(k)  # interleaved int16 stereo, 2*k values
            if block.size:
                peak = max(peak, int(abs(block.astype("int32")).max()))
            out.writeframes(block.tobytes())
            total += k
            n -= k

    position = 0.0  # seconds since the start, exact
    for msg in mid:  # merged tracks, msg.time = seconds since the previous message
        position += msg.time
        due = int(position * sample_rate) - total
        if due > 0:
            step(due)
        if msg.is_meta or msg.type == "sysex":
            continue
        ch = msg.channel
        if msg.type == "note_on" and msg.velocity > 0:
            synth.noteon(ch, msg.note, msg.velocity)
            notes += 1
        elif msg.type in ("note_on", "note_off"):
            synth.noteoff(ch, msg.note)
        elif msg.type == "program_change":
            synth.program_change(ch, msg.program)
        elif msg.type == "control_change":
            synth.cc(ch, msg.control, msg.value)
        elif msg.type == "pitchwheel":
            synth.pitch_bend(ch, msg.pitch)
    step(int(tail_seconds * sample_rate))
    return total, notes, peak


def render_midi_to_wav(midi_path: str | os.PathLike, wav_path: str | os.PathLike,
                       soundfont: str | os.PathLike | None = None, sample_rate: int = 44100,
                       tail_seconds: float = 1.5, gain: float = 0.4, limits: InputLimits | None = None
                       ) -> RenderInfo:
    """Render ``midi_path`` to ``wav_path``; raises ``RenderError`` (corrupt MIDI, a file over ``limits``,
    unloadable soundfont), ``SoundfontNotFound`` or ``OutputError`` (a refused or unwritable target), all checked
    before anything renders."""
    midi_path, wav_path = Path(midi_path), check_target(wav_path, WAV, inputs=[midi_path])
    mid, warnings = _load_midi(midi_path, limits)
    sf = find_soundfont(soundfont)
    fs = fluid.load()
    synth = fs.Synth(gain=gain, samplerate=float(sample_rate))
    try:
        with fluid.captured_log(fs) as log:
            if synth.sfload(str(sf), 1) < 0:  # 1: give every channel its default preset
                raise RenderError(f"{sf}: cannot load soundfont ({log[-1] if log else 'sfload failed'})")

        def write(f) -> tuple[int, int, int]:
            with wave.open(f, "wb") as out:
                out.setnchannels(2)
                out.setsampwidth(2)
                out.setframerate(sample_rate)
                return _stream(mid, synth, out, sample_rate, tail_seconds)

        total, notes, peak = write_together([(wav_path, write)])[0]
    finally:
        synth.delete()
    return RenderInfo(wav_path, sf, sample_rate, total, notes, peak, warnings)
