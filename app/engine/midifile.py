"""Read a player's melody from a MIDI file: onto the frame grid for the model, and as played for the recording;
and the checks every MIDI file a user hands Comper goes through first (``load_midi``), shared with ``render``.

mido reads the file; the grid comes from the file's own beats (ticks per quarter note), so the tempo only sets
the clock of the re-jam, not where notes fall. The model hears the melody quantized (``frames``); the re-jam's
``Melody`` track gets the notes as played (``notes``: off-grid onsets such as triplets, and velocities, kept).
No note is lost: a pitch struck again before its note-off ends the first note there, and a note never released
ends at the end of the file. A file that cannot be read is one clear error naming it.

What a file may not do (each refused in one line naming the file and the limit, before any model runs or any
output is written): be bigger than ``InputLimits.max_bytes`` (read at most that much: a 44-byte file can still
claim hours, but not gigabytes), or last longer than ``max_minutes`` / ``max_frames`` (a 44-byte file with one
note-off 2^28 ticks on once made ``render`` write 544 MB of WAV). Quirks that are only odd are repaired and said
in one warning line (``warnings``): a ``set_tempo`` of 0 us per beat (a division by zero downstream) is dropped.

Drums: notes on the General MIDI drum channel (channel 10, index 9) are never the melody; a file whose only notes
are drums is refused with a hint, instead of comping a drum groove as if it were a tune.

Type-2 files (``in_sequence``): a type-2 file is a set of independent patterns, each on its own timeline, as a
drum machine or a pattern sequencer saves a song; what a musician hears from the device that made it is the patterns
played one after another. So ``render`` plays them in sequence, and ``rejam`` takes the melody from the patterns in
sequence (or, with ``--track NAME``, from that one pattern). Reading them as a type-1 file would stack every
pattern at time 0; refusing them would turn away a valid file.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import mido

from ..errors import ComperError
from .clock import FRAMES_PER_BEAT
from .melody import MelodyTrack

DRUM_CHANNEL = 9  # General MIDI channel 10
DEFAULT_TEMPO = 500000  # us per beat: 120 bpm, the MIDI default


class MidiFileError(ComperError):
    pass


@dataclass(frozen=True)
class InputLimits:
    """How big and how long a MIDI file ``comper rejam`` and ``comper render`` take (None: no limit).

    The defaults fit any song a player brings (20 minutes; 20000 frames is 20 minutes at 250 bpm) and keep a
    hostile file from costing more than a minute or a few hundred MB: a re-jam costs a model call per frame,
    a render ~10 MB of WAV per minute. ``max_frames`` is for re-jams only."""

    max_bytes: int | None = 16 * 1024 * 1024  # a one-hour piano performance is ~1 MB
    max_minutes: float | None = 20.0
    max_frames: int | None = 20_000


@dataclass
class MelodyFile:
    frames: list[tuple[int, bool]]  # (top pitch or -1, onset) per frame
    bpm: float
    meter: tuple[int, int]
    track_name: str
    notes: list[tuple[float, float, int, int]]  # (on_frame, off_frame, pitch, velocity) as played: fractional frames
    warnings: list[str] = field(default_factory=list)  # what was odd but repaired, one line each naming the file
    # the melody track's pedals, bends and pressure as played: (frame, status without channel, data bytes)
    controls: list[tuple[float, int, tuple[int, ...]]] = field(default_factory=list)

    def events(self) -> list[tuple[float, str, int, int]]:
        """(frame, "on"/"off", pitch, velocity) in time order; at equal times offs come first (a re-struck pitch
        is released before it sounds again), and a note's on always precedes its off."""
        timed = [(on, 1, i, "on", p, v) for i, (on, _, p, v) in enumerate(self.notes)]
        timed += [(off, 2 if off == on else 0, i, "off", p, 0) for i, (on, off, p, _) in enumerate(self.notes)]
        return [(f, kind, p, v) for f, _, _, kind, p, v in sorted(timed)]


def load_midi(path: str | Path, limits: InputLimits | None = None, error: type[Exception] = MidiFileError
              ) -> tuple[mido.MidiFile, list[str]]:
    """Read a MIDI file a user named, within ``limits.max_bytes``; returns it with its tempo-0 events dropped, and
    the warning lines. Raises ``error`` (one line naming the file) for a file too big or unreadable, or with a time
    division Comper cannot place on a beat grid (0, or SMPTE frames)."""
    path = Path(path)
    cap = limits.max_bytes if limits is not None else None
    try:
        with open(path, "rb") as f:  # read here, bounded: a pipe or /dev/zero is a file too
            data = f.read() if cap is None else f.read(cap + 1)
    except OSError as e:
        raise error(f"{path}: not a readable MIDI file ({e.strerror or e})") from None
    if cap is not None and len(data) > cap:
        raise error(f"{path}: over the {_mb(cap)} limit for a MIDI file: not read")
    try:
        mid = mido.MidiFile(file=io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - mido raises OSError, EOFError, ValueError, KeyError... for bad files
        detail = " ".join(str(e).split())[:120]
        raise error(f"{path}: not a readable MIDI file ({type(e).__name__}{': ' + detail if detail else ''})"
                    ) from None
    if mid.ticks_per_beat <= 0 or mid.ticks_per_beat >= 0x8000:
        what = "0 ticks per beat" if mid.ticks_per_beat <= 0 else "SMPTE frame time, not ticks per beat"
        raise error(f"{path}: the header gives {what}: no beat grid to read the notes on")
    warnings = []
    dropped = sum(_drop_tempo_zero(t) for t in mid.tracks)
    if dropped:
        warnings.append(f"{path}: {dropped} set_tempo event{'s' if dropped > 1 else ''} of 0 us per beat "
                        f"ignored (not a tempo)")
    return mid, warnings


def _mb(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n} bytes"


def _drop_tempo_zero(track: mido.MidiTrack) -> int:
    """Remove ``set_tempo`` events of tempo 0 from ``track`` (their delta time goes to the next event); returns how
    many."""
    kept, carry, dropped = [], 0, 0
    for msg in track:
        if msg.type == "set_tempo" and msg.tempo <= 0:
            carry += msg.time
            dropped += 1
            continue
        kept.append(msg.copy(time=msg.time + carry) if carry else msg)
        carry = 0
    if dropped:
        track[:] = kept
    return dropped


def in_sequence(mid: mido.MidiFile) -> mido.MidiFile:
    """A type-2 file as a type-0 file: its patterns one after another (module docstring: why). Each pattern starts
    at the default tempo unless it sets its own, as it would played alone. Other files are returned as they are."""
    if mid.type != 2:
        return mid
    track, carry = mido.MidiTrack(), 0
    for i, pattern in enumerate(mid.tracks):
        if i > 0:
            track.append(mido.MetaMessage("set_tempo", tempo=DEFAULT_TEMPO, time=carry))
            carry = 0
        for msg in pattern:
            if msg.type == "end_of_track":  # a pattern's trailing rest is kept: the next starts after it
                carry += msg.time
                continue
            track.append(msg.copy(time=msg.time + carry) if carry else msg)
            carry = 0
    track.append(mido.MetaMessage("end_of_track", time=carry))
    return mido.MidiFile(type=0, ticks_per_beat=mid.ticks_per_beat, tracks=[track])


def check_minutes(path: Path, seconds: float, limits: InputLimits | None, error: type[Exception],
                  what: str = "of music") -> None:
    """Raise ``error`` when ``seconds`` is over ``limits.max_minutes``."""
    if limits is not None and limits.max_minutes is not None and not seconds <= limits.max_minutes * 60:
        raise error(f"{path}: {seconds / 60:.1f} minutes {what}, over the {limits.max_minutes:g}-minute limit "
                    f"(--max-minutes)")


def _is_note(msg: mido.Message) -> bool:
    """A melody note event: note-on or note-off, not on the drum channel."""
    return msg.type in ("note_on", "note_off") and msg.channel != DRUM_CHANNEL


def _has_notes(track: mido.MidiTrack, drums: bool = False) -> bool:
    return any(m.type == "note_on" and m.velocity > 0 and (m.channel == DRUM_CHANNEL) == drums for m in track)


def read_melody(path: str | Path, track: str | None = None, limits: InputLimits | None = None,
                bpm: float | None = None) -> MelodyFile:
    """The melody of the MIDI file ``path``: the track named ``track``, else the first with notes (drums are never
    the melody). ``limits`` (None: none) are checked before the frames are built, the length in minutes at ``bpm``
    (None: the file's tempo). Raises ``MidiFileError``, one line naming the file."""
    path = Path(path)
    mid, warnings = load_midi(path, limits)
    named = [t for t in mid.tracks if t.name == track]
    if track is not None and not named:
        names = ", ".join(repr(t.name) for t in mid.tracks)
        raise MidiFileError(f"{path}: no track named {track!r} (tracks: {names})")
    if mid.type == 2:
        if track is not None:  # that pattern alone
            mid.tracks = named[:1]
        mid = in_sequence(mid)
        named = mid.tracks if track is not None else []
    file_bpm, meter = _tempo_and_meter(path, mid, warnings)
    candidates = [t for t in mid.tracks if _has_notes(t)]
    if track is not None:
        candidates = [t for t in named if _has_notes(t)]
        if not candidates and any(_has_notes(t, drums=True) for t in named):
            raise MidiFileError(f"{path}: track {track!r} holds only drums (MIDI channel 10), no melody; name the "
                                f"melody's track, or move the melody to another channel")
        candidates = candidates or named
    if not candidates:
        if any(_has_notes(t, drums=True) for t in mid.tracks):
            raise MidiFileError(f"{path}: its only notes are drums (MIDI channel 10), no melody to accompany; "
                                f"give a file with the melody on another channel")
        raise MidiFileError(f"{path}: no track with notes")
    chosen = candidates[0]
    end = max(sum(m.time for m in t) for t in mid.tracks)  # the file's last tick
    notes = _played_notes(chosen, end, mid.ticks_per_beat / FRAMES_PER_BEAT)
    to_frame = FRAMES_PER_BEAT / mid.ticks_per_beat
    if limits is not None:  # before the frames are built: one per 16th however long the file claims to be
        frames = math.ceil(max((off for _, off, _, _ in notes), default=0) * to_frame)
        jam_bpm = bpm or file_bpm
        if limits.max_frames is not None and frames > limits.max_frames:
            raise MidiFileError(f"{path}: the melody lasts {frames} frames (16ths), over the limit of "
                                f"{limits.max_frames} (--max-frames)")
        check_minutes(path, frames / FRAMES_PER_BEAT * 60 / jam_bpm, limits, MidiFileError,
                      f"of melody at {jam_bpm:g} bpm")
    return MelodyFile(_frames(notes, to_frame), file_bpm, meter, chosen.name,
                      [(on * to_frame, off * to_frame, p, v) for on, off, p, v in notes], warnings,
                      [(tick * to_frame, status, data) for tick, status, data in _played_controls(chosen)])


def _tempo_and_meter(path: Path, mid: mido.MidiFile, warnings: list[str]) -> tuple[float, tuple[int, int]]:
    """The first tempo and time signature, each replaced by the default (and a warning) when no jam could run at
    it: a tempo outside the journal's ``BPM_RANGE`` (a MIDI tempo can say 60 million bpm), a meter a bar cannot
    have (0 beats, a unit that is no power of two up to 32)."""
    from ..recording.journal import BPM_RANGE, DEFAULT_BPM  # not at the top: app.recording imports this module

    tempo = next((m.tempo for m in mido.merge_tracks(mid.tracks) if m.type == "set_tempo"), DEFAULT_TEMPO)
    bpm = mido.tempo2bpm(tempo)
    if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
        warnings.append(f"{path}: tempo {bpm:.4g} bpm is outside {BPM_RANGE[0]:g}..{BPM_RANGE[1]:g}; {DEFAULT_BPM:g} "
                        f"used (--bpm sets it)")
        bpm = DEFAULT_BPM
    sig = next((m for m in mido.merge_tracks(mid.tracks) if m.type == "time_signature"), None)
    meter = (sig.numerator, sig.denominator) if sig is not None else (4, 4)
    if not (1 <= meter[0] <= 255 and meter[1] in (1, 2, 4, 8, 16, 32)):
        den = meter[1] if meter[1] < 1024 else f"2^{int(meter[1]).bit_length() - 1}"
        warnings.append(f"{path}: time signature {meter[0]}/{den} is no meter; 4/4 used")
        meter = (4, 4)
    return bpm, meter


def _played_controls(track: mido.MidiTrack) -> list[tuple[int, int, tuple[int, ...]]]:
    """(tick, status without channel, data bytes) of the track's controllers, pitch bends and pressure (what a live
    take's journal keeps, ``journal.CONTROL_KINDS``), drums' channel left out: the sustain pedal is part of the
    melody as played."""
    from ..recording.journal import CONTROL_KINDS  # not at the top: app.recording imports this module

    out, tick = [], 0
    for msg in track:
        tick += msg.time
        if msg.is_meta or not hasattr(msg, "channel") or msg.channel == DRUM_CHANNEL:
            continue
        raw = msg.bytes()
        if raw[0] & 0xF0 in CONTROL_KINDS:
            out.append((tick, raw[0] & 0xF0, tuple(raw[1:])))
    return out


def _played_notes(track: mido.MidiTrack, end: int, frame_ticks: float) -> list[tuple[float, float, int, int]]:
    """(on_tick, off_tick, pitch, velocity) of every note struck, in onset order (drums left out). A pitch struck
    again before its note-off ends the sounding note at the new onset; a note never released ends at ``end`` (at
    least a frame on)."""
    notes, open_notes, tick = [], {}, 0
    for msg in track:
        tick += msg.time
        if not _is_note(msg):
            continue
        if msg.note in open_notes:
            on, vel = open_notes.pop(msg.note)
            notes.append((on, tick, msg.note, vel))
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[msg.note] = (tick, msg.velocity)
    notes += [(on, max(end, on + frame_ticks), pitch, vel) for pitch, (on, vel) in open_notes.items()]
    return sorted(notes)


def _frames(notes: list[tuple[float, float, int, int]], to_frame: float) -> list[tuple[int, bool]]:
    """What the model hears: each note quantized to the nearest frame (at least one frame long), the top note of
    each frame."""
    melody = MelodyTrack()
    for on, off, pitch, _ in notes:
        melody.note_on(pitch, int(round(on * to_frame)))
        melody.note_off(pitch, int(round(off * to_frame)))
    frames = []
    for f in range(max((off for _, _, off in melody.notes), default=0)):
        frames.append(melody.frame(f))
        if f % 64 == 0 or len(melody.notes) > 1024:  # many notes struck at once (a hostile file) are let go soon
            melody.prune(f)
    return frames
