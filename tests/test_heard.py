"""The listener's measures: chord changes per bar, off-beat strikes, out-of-key time, chord length."""

import numpy as np
import pytest

from app.engine.key import Key
from training.data.chords import N_QUALITIES, QUALITY_INDEX
from training.evaluation.heard import (
    changes,
    changes_per_bar,
    mean_chord_beats,
    measure_heard,
    offbeat_onset_share,
    out_of_key_share,
    song_key,
)


def chord(root: int, quality: str = "maj") -> int:
    return root * N_QUALITIES + QUALITY_INDEX[quality]


C, F, G, Db = chord(0), chord(5), chord(7), chord(1)


def test_a_restrike_is_not_a_change_but_a_chord_after_silence_is():
    c = np.array([C] * 8 + [C] * 8 + [-1] * 4 + [G] * 12)
    onset = np.zeros(len(c), bool)
    onset[[0, 8, 20]] = True  # C struck twice, then G after a rest
    assert changes(c) == 2
    assert changes_per_bar(c, 16) == pytest.approx(2 / 2)
    assert mean_chord_beats(c, onset) == pytest.approx((8 + 8 + 12) / 3 / 4)


def test_off_beat_strikes_count_even_when_they_repeat_the_chord():
    c = np.array([C] * 16)
    onset = np.zeros(16, bool)
    onset[[0, 4, 6, 10]] = True
    assert offbeat_onset_share(c, onset) == pytest.approx(2 / 4)
    assert offbeat_onset_share(np.full(8, -1), np.zeros(8, bool)) is None


def test_out_of_key_time_uses_the_annotated_key_or_the_melody():
    c = np.array([C] * 4 + [F] * 4 + [G] * 4 + [Db] * 4)
    assert out_of_key_share(c, Key(0, "major")) == pytest.approx(0.25)  # Db major is outside C major
    e_major = chord(4)  # V of A minor, with its raised G#: in the key
    assert out_of_key_share(np.array([e_major] * 4), Key(9, "minor")) == 0.0
    melody = np.repeat([69, 71, 72, 74, 76, 77, 80, 81], 4)
    assert song_key(None, melody) == Key(9, "minor")
    assert song_key([2, "major"], melody) == Key(2, "major")


def test_measure_heard_averages_over_songs_and_skips_undefined_ones():
    songs = [np.array([C] * 16), np.full(16, -1)]
    onsets = [np.eye(1, 16, 0, dtype=bool)[0], np.zeros(16, bool)]
    m = measure_heard(songs, onsets, [np.full(16, 60)] * 2, [[0, "major"], None], [16, 16])
    assert m["changes_per_bar"] == pytest.approx(0.5)  # 1 and 0 changes in one bar each
    assert m["out_of_key"] == 0.0 and m["offbeat_onsets"] == 0.0  # the silent song has neither
