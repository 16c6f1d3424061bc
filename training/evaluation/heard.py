"""What a listener notices first about an accompaniment, beyond note-in-chord harmony: how often the chord changes,
whether changes land on the beat, whether the chords stay in the song's key, and how long a chord lasts.

Frames are 16th notes, crops start on a beat (so frame % 4 == 0 is a beat). A *change* is a frame whose sounding
chord differs from the previous frame's (a chord after silence counts; re-striking the same chord does not: the
harmony did not move). An *onset* is every struck chord (changes and re-strikes, the codec's event rule), so
off-beat strikes count against a system even when they repeat the chord.

The key of a song is its annotated key where the source has one (POP909, most MusicXML), else the
Krumhansl-Schmuckler estimate over the whole melody (``app.engine.key.estimate_key``). A chord is *out of key*
when any of its tones is outside the key's scale (major; minor with the natural and the raised 7th, so V of a
minor key is in it).
"""

from __future__ import annotations

import numpy as np

from app.engine.key import Key, estimate_key

from .harmony import CHORD_PC
from .timing import chord_events, event_onsets


def changes(chords: np.ndarray) -> int:
    c = np.asarray(chords)
    prev = np.concatenate([[-1], c[:-1]])
    return int(((c != prev) & (c >= 0)).sum())


def changes_per_bar(chords: np.ndarray, bar_frames: int) -> float | None:
    n = len(chords)
    return changes(chords) / (n / bar_frames) if n else None


def offbeat_onset_share(chords: np.ndarray, onset: np.ndarray) -> float | None:
    on = np.flatnonzero(event_onsets(chords, onset))
    return float((on % 4 != 0).mean()) if len(on) else None


def song_key(key: list | None, melody: np.ndarray) -> Key | None:
    """The annotated key ([tonic, mode]) or, without one, the key of the whole melody."""
    if key:
        return Key(int(key[0]) % 12, "minor" if str(key[1]).startswith("min") else "major")
    return estimate_key(melody)


def out_of_key_share(chords: np.ndarray, key: Key | None) -> float | None:
    """Share of sounding chord time whose chord has a tone outside ``key``."""
    c = np.asarray(chords)
    sounding = c[c >= 0]
    if key is None or not len(sounding):
        return None
    outside = (CHORD_PC[sounding] & ~key.scale()[None, :]).any(1)
    return float(outside.mean())


def mean_chord_beats(chords: np.ndarray, onset: np.ndarray) -> float | None:
    _, lengths, _ = chord_events(chords, onset)
    return float(lengths.mean() / 4) if len(lengths) else None


def measure_heard(chords: list[np.ndarray], onsets: list[np.ndarray], melodies: list[np.ndarray],
                  keys: list[list | None], bar_frames: list[int]) -> dict:
    """Per-song means of every measure above (songs where a measure is undefined are left out of its mean)."""
    def mean(values):
        v = [x for x in values if x is not None]
        return float(np.mean(v)) if v else float("nan")

    skeys = [song_key(k, m) for k, m in zip(keys, melodies)]
    return {
        "changes_per_bar": mean([changes_per_bar(c, b) for c, b in zip(chords, bar_frames)]),
        "offbeat_onsets": mean([offbeat_onset_share(c, o) for c, o in zip(chords, onsets)]),
        "out_of_key": mean([out_of_key_share(c, k) for c, k in zip(chords, skeys)]),
        "mean_chord_beats": mean([mean_chord_beats(c, o) for c, o in zip(chords, onsets)]),
    }
