"""Key sense: which key the melody heard so far is in, updated frame by frame, and which chords belong to it.

Krumhansl-Schmuckler: correlate a pitch-class profile of the melody with the Krumhansl-Kessler probe-tone profiles
of the 24 major and minor keys (the standard set; the evaluation's `online-key` baseline uses the same estimate).
Live, the profile decays (half-life ``HALF_LIFE_BEATS``) so a song that modulates is followed, and the estimate
only moves to another key when that key fits clearly better (``SWITCH_MARGIN``), so one chromatic passing note
does not flip it. Written here rather than taken from music21: the app must not pull music21 (and its start-up
time) in, and the whole method is twenty lines of numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Krumhansl-Kessler probe-tone profiles (major, minor), tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_SHARPS = {"C#": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "E#": 5, "Fb": 4, "B#": 0}
# The scale a chord tone may come from without leaving the key: major, and minor with both the natural and the
# raised seventh (so the dominant E major belongs to A minor, as every harmony book has it).
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)
HALF_LIFE_BEATS = 32.0
SWITCH_MARGIN = 0.05
FRAMES_PER_BEAT = 4


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0-11
    mode: str  # "major" | "minor"

    @property
    def index(self) -> int:
        """0-11 major keys, 12-23 minor keys."""
        return self.tonic + (12 if self.mode == "minor" else 0)

    @property
    def name(self) -> str:
        return NAMES[self.tonic] + ("m" if self.mode == "minor" else "")

    def scale(self) -> np.ndarray:
        """Bool [12]: the pitch classes of this key."""
        out = np.zeros(12, bool)
        out[[(self.tonic + d) % 12 for d in (MINOR_SCALE if self.mode == "minor" else MAJOR_SCALE)]] = True
        return out

    @classmethod
    def from_index(cls, i: int) -> Key:
        return cls(i % 12, "minor" if i >= 12 else "major")

    @classmethod
    def parse(cls, text: str) -> Key:
        """'C', 'F#', 'Bb', 'Am', 'C#m', 'Eb minor', 'A major' -> Key; ValueError names what is wrong."""
        t = text.strip().replace("minor", "m").replace("major", "").replace(" ", "")
        minor = t.endswith("m")
        root = t[:-1] if minor else t
        root = root[:1].upper() + root[1:]
        if root in NAMES:
            pc = NAMES.index(root)
        elif root in _SHARPS:
            pc = _SHARPS[root]
        else:
            raise ValueError(f"key {text!r}: expected a note name and an optional 'm', like C, F#, Bb or Am")
        return cls(pc, "minor" if minor else "major")


ALL_KEYS = tuple(Key.from_index(i) for i in range(24))


def _zscored_profiles() -> np.ndarray:
    rows = [np.roll(KK_MAJOR, k) for k in range(12)] + [np.roll(KK_MINOR, k) for k in range(12)]
    p = np.array(rows)
    return (p - p.mean(1, keepdims=True)) / p.std(1, keepdims=True)


PROFILES = _zscored_profiles()  # [24, 12], row = Key.index


def key_scores(histogram: np.ndarray) -> np.ndarray | None:
    """Correlation of a pitch-class histogram with each of the 24 keys' profiles; None if it says nothing."""
    h = np.asarray(histogram, dtype=float)
    if h.sum() <= 0 or h.std() == 0:
        return None
    return PROFILES @ ((h - h.mean()) / h.std()) / 12.0


def estimate_key(melody: np.ndarray) -> Key | None:
    """The key of a melody (MIDI pitch per frame, -1 for silence), each frame weighted alike (so by duration)."""
    m = np.asarray(melody)
    scores = key_scores(np.bincount(m[m >= 0] % 12, minlength=12))
    return None if scores is None else Key.from_index(int(np.argmax(scores)))


class KeyTracker:
    """The key of the melody heard so far, one frame at a time (decaying profile, hysteresis)."""

    def __init__(self, half_life_beats: float = HALF_LIFE_BEATS, margin: float = SWITCH_MARGIN) -> None:
        self.decay = 0.5 ** (1.0 / (half_life_beats * FRAMES_PER_BEAT))
        self.margin = margin
        self.histogram = np.zeros(12)
        self.key: Key | None = None
        self.frames_heard = 0  # frames with a melody note

    def hear(self, pitch: int) -> Key | None:
        """One frame of melody (MIDI pitch or -1); returns the current estimate."""
        self.histogram *= self.decay
        if pitch < 0:
            return self.key
        self.histogram[pitch % 12] += 1.0
        self.frames_heard += 1
        scores = key_scores(self.histogram)
        if scores is not None:
            best = int(np.argmax(scores))
            if self.key is None or scores[best] > scores[self.key.index] + self.margin:
                self.key = Key.from_index(best)
        return self.key

    @property
    def confidence(self) -> float:
        """0 with nothing heard, 1 after two bars of melody: how far the key prior should be trusted yet."""
        return min(1.0, self.frames_heard / (8 * FRAMES_PER_BEAT))
