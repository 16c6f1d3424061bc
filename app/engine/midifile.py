"""Read a player's melody from a MIDI file: onto the frame grid for the model, and as played for the recording.

mido reads the file; the grid comes from the file's own beats (ticks per quarter note), so the tempo only sets
the clock of the re-jam, not where notes fall. The model hears the melody quantized (``frames``); the re-jam's
``Melody`` track gets the notes as played (``notes``: off-grid onsets such as triplets, and velocities, kept).
No note is lost: a pitch struck again before its note-off ends the first note there, and a note never released
ends at the end of the file. A file that cannot be read is one clear error naming it.
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
    notes: list[tuple[float, float, int, int]]  # (on_frame, off_frame, pitch, velocity) as played: fractional frames

    def events(self) -> list[tuple[float, str, int, int]]:
        """(frame, "on"/"off", pitch, velocity) in time order; at equal times offs come first (a re-struck pitch
        is released before it sounds again), and a note's on always precedes its off."""
        timed = [(on, 1, i, "on", p, v) for i, (on, _, p, v) in enumerate(self.notes)]
        timed += [(off, 2 if off == on else 0, i, "off", p, 0) for i, (on, off, p, _) in enumerate(self.notes)]
        return [(f, kind, p, v) for f, _, _, kind, p, v in sorted(timed)]


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
    end = max(sum(m.time for m in t) for t in mid.tracks)  # the file's last tick
    notes = _played_notes(chosen, end, mid.ticks_per_beat / FRAMES_PER_BEAT)
    to_frame = FRAMES_PER_BEAT / mid.ticks_per_beat
    return MelodyFile(_frames(notes, to_frame), mido.tempo2bpm(tempo), meter, chosen.name,
                      [(on * to_frame, off * to_frame, p, v) for on, off, p, v in notes])


def _played_notes(track: mido.MidiTrack, end: int, frame_ticks: float) -> list[tuple[float, float, int, int]]:
    """(on_tick, off_tick, pitch, velocity) of every note struck, in onset order. A pitch struck again before its
    note-off ends the sounding note at the new onset; a note never released ends at ``end`` (at least a frame on)."""
    notes, open_notes, tick = [], {}, 0
    for msg in track:
        tick += msg.time
        if msg.type not in ("note_on", "note_off"):
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
        if f % 64 == 0:
            melody.prune(f)
    return frames
