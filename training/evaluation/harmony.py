"""Note-in-chord ratio, the papers' harmony metric.

Per song: the fraction of frames, among those where both the melody and a chord sound, whose melody pitch class
is in the chord's pitch classes; the system score is the mean over songs (not over frames), as in ReaLchords
App. K and the reference code.
"""

from __future__ import annotations

import numpy as np

from ..data.chords import N_CHORDS, Chord

# [N_CHORDS, 12] bool: chord c contains pitch class p
CHORD_PC = np.zeros((N_CHORDS, 12), bool)
for _c in range(N_CHORDS):
    CHORD_PC[_c, list(Chord.from_index(_c).pitch_classes)] = True


def note_in_chord(melody: np.ndarray, chords: np.ndarray) -> float | None:
    """melody: pitches per frame (-1 silence); chords: vocabulary index per frame (-1 none). None if no frame
    has both sounding."""
    both = (melody >= 0) & (chords >= 0)
    if not both.any():
        return None
    return float(CHORD_PC[chords[both], melody[both] % 12].mean())


def mean_over_songs(melodies: list[np.ndarray], chords: list[np.ndarray]) -> tuple[float, int]:
    """The system score and how many songs counted (songs with no frame where both sound are left out)."""
    ratios = [r for r in (note_in_chord(m, c) for m, c in zip(melodies, chords)) if r is not None]
    return (float(np.mean(ratios)) if ratios else float("nan")), len(ratios)
