"""Note-in-chord ratio, the papers' harmony metric.

Per song: the fraction of frames, among those where both the melody and a chord sound, whose melody pitch class
is in the chord's pitch classes; the system score is the mean over songs (not over frames), as in ReaLchords
App. K and the reference code.

Adaptation (ReaLchords §5.4 / App. K, GAPT Fig. 7): the same ratio per beat (``per_beat_note_in_chord``: per song,
only that beat's frames count, songs with no counting frame in the beat are left out of that beat, then the mean
over songs), and from that curve how many beats a system needs to get back near its level after the melody is
transposed at beat 16 (``beats_to_recover``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.chords import N_CHORDS, Chord
from ..data.codec import FRAMES_PER_BEAT

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


def per_beat_note_in_chord(melodies: Sequence[np.ndarray], chords: Sequence[np.ndarray], n_beats: int = 64,
                           frames_per_beat: int = FRAMES_PER_BEAT) -> np.ndarray:
    """[n_beats] curve: for each beat, the mean over songs of that song's note-in-chord ratio within the beat.

    A song counts for a beat only if some frame of the beat has both melody and chord sounding (a song shorter
    than the curve simply stops counting); NaN where no song counts. ``melodies`` / ``chords`` may also be 2-D
    arrays [songs, T].
    """
    n_frames = n_beats * frames_per_beat
    sums = np.zeros(n_beats)
    counts = np.zeros(n_beats, np.int64)
    for mel, ch in zip(melodies, chords):
        mel, ch = np.asarray(mel)[:n_frames], np.asarray(ch)[:n_frames]
        both = np.zeros(n_frames, bool)
        hit = np.zeros(n_frames, bool)
        both[:len(mel)] = (mel >= 0) & (ch >= 0)
        idx = np.flatnonzero(both)
        hit[idx] = CHORD_PC[ch[idx], mel[idx] % 12]
        n_both = both.reshape(n_beats, frames_per_beat).sum(1)
        n_hit = hit.reshape(n_beats, frames_per_beat).sum(1)
        ok = n_both > 0
        sums[ok] += n_hit[ok] / n_both[ok]
        counts[ok] += 1
    curve = np.full(n_beats, np.nan)
    curve[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return curve


def beats_to_recover(curve: np.ndarray, change_beat: int = 16, level: float = 0.9, pre_beats: int = 8) -> int | None:
    """Beats from ``change_beat`` until the curve is first back to ``level`` x its pre-change level.

    Pre-change level = mean of the curve over the ``pre_beats`` beats before ``change_beat`` (NaN beats ignored).
    The count starts at 0 on the change beat itself: 0 means the curve never dropped below the target, k means
    beat ``change_beat + k`` is the first at or above it. None if it never gets back (NaN beats never count) or
    the pre-change level is undefined (all NaN).
    """
    curve = np.asarray(curve, float)
    if not 0 < pre_beats <= change_beat <= len(curve):
        raise ValueError(f"need 0 < pre_beats ({pre_beats}) <= change_beat ({change_beat}) <= len(curve) "
                         f"({len(curve)})")
    pre = curve[change_beat - pre_beats:change_beat]
    pre = pre[~np.isnan(pre)]
    if not len(pre):
        return None
    after = curve[change_beat:]
    back = np.flatnonzero(~np.isnan(after) & (after >= level * pre.mean()))
    return int(back[0]) if len(back) else None
