"""Read a player's melody from a MIDI file onto the frame grid (for `comper rejam`).

mido reads the file; the grid comes from the file's own beats (ticks per quarter note), so the tempo only sets
the clock of the re-jam, not where notes fall. A file that cannot be read is one clear error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mido

from .clock import FRAMES_PER_BEAT
from .melody import MelodyTrack


class MidiFileError(Exception):
    pass


@dataclass
class MelodyFile:
    frames: list[tuple[int, bool]]  # (top pitch or -1, onset) per frame
    bpm: float
    meter: tuple[int, int]
    track_name: str
    notes: list[tuple[int, int, int, int]]  # (on_frame, off_frame, pitch, velocity)


def read_melody(path: str | Path, track: str | None = None) -> MelodyFile:
    path = Path(path)
    try:
        mid = mido.MidiFile(path)
    except Exception as e:  # noqa: BLE001 - mido raises OSError, EOFError, ValueError, KeyError... for bad files
        raise MidiFileError(f"{path}: not a readable MIDI file ({type(e).__name__}: {e})") from e
    tempo, meter = 500000, (4, 4)
    for msg in mido.merge_tracks(mid.tracks):
        if msg.type == "set_tempo":
            tempo = msg.tempo
            break
    for msg in mido.merge_tracks(mid.tracks):
        if msg.type == "time_signature":
            meter = (msg.numerator, msg.denominator)
            break
    candidates = [t for t in mid.tracks if any(m.type == "note_on" and m.velocity > 0 for m in t)]
    if track is not None:
        named = [t for t in mid.tracks if t.name == track]
        if not named:
            names = ", ".join(repr(t.name) for t in mid.tracks)
            raise MidiFileError(f"{path}: no track named {track!r} (tracks: {names})")
        candidates = named
    if not candidates:
        raise MidiFileError(f"{path}: no track with notes")
    chosen = candidates[0]
    tpb = mid.ticks_per_beat
    melody, notes, open_notes, tick = MelodyTrack(), [], {}, 0
    for msg in chosen:
        tick += msg.time
        frame = int(round(tick / tpb * FRAMES_PER_BEAT))
        if msg.type == "note_on" and msg.velocity > 0:
            melody.note_on(msg.note, frame)
            open_notes[msg.note] = (frame, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            melody.note_off(msg.note, frame)
            if msg.note in open_notes:
                on, vel = open_notes.pop(msg.note)
                notes.append((on, max(frame, on + 1), msg.note, vel))
    end = max((n[1] for n in notes), default=0)
    frames = []
    for f in range(end):
        frames.append(melody.frame(f))
        if f % 64 == 0:
            melody.prune(f)
    return MelodyFile(frames, mido.tempo2bpm(tempo), meter, chosen.name, sorted(notes))
