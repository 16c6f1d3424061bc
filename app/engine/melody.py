"""What the player plays, as the model hears it: note events quantized to the nearest frame, one melody line.

Events are stamped on arrival and sound at once through the synth (never delayed); this copy is only what the
model conditions on. Overlapping notes reduce to the top sounding note (the melody a pianist's right hand plays);
a frame whose top note was struck in it is an onset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SILENT = -1


@dataclass
class MelodyTrack:
    """Quantized notes: pitch -> list of [on_frame, off_frame | None]; frames are read once they are closed."""

    notes: list[list] = field(default_factory=list)  # [pitch, on_frame, off_frame or None]
    _open: dict[int, list] = field(default_factory=dict)

    def note_on(self, pitch: int, frame: int) -> None:
        if pitch in self._open:  # re-struck without a release: close the old one here
            self.note_off(pitch, frame)
        note = [pitch, max(frame, 0), None]
        self.notes.append(note)
        self._open[pitch] = note

    def note_off(self, pitch: int, frame: int) -> None:
        note = self._open.pop(pitch, None)
        if note is not None:
            note[2] = max(frame, note[1] + 1)  # a note shorter than a frame lasts one frame

    def frame(self, f: int) -> tuple[int, bool]:
        """(pitch or SILENT, onset) of frame ``f``: the top note sounding in it."""
        best, onset = SILENT, False
        for pitch, on, off in self.notes:
            if on <= f and (off is None or f < off) and pitch > best:
                best, onset = pitch, on == f
        return best, onset

    def prune(self, before_frame: int) -> None:
        """Forget notes that ended before ``before_frame``: the engine reads frames in order and prunes behind
        itself, so the scan per frame stays short however long the jam (the recording keeps the full history)."""
        self.notes = [n for n in self.notes if n[2] is None or n[2] > before_frame]
