"""The chord vocabulary: one table, documented simplification rules, transposition by root rotation."""

import pytest

from training.data.chords import (
    N_CHORDS,
    QUALITIES,
    Chord,
    Mapping,
    chord_from_symbol,
    map_chord,
    parse_chord_text,
    parse_harte,
)


def test_every_quality_maps_exactly_to_itself_in_every_root():
    for root in range(12):
        for qi, q in enumerate(QUALITIES):
            m = map_chord(root, q.intervals)
            assert m.kind is Mapping.EXACT and m.chord == Chord(root, qi)


def test_table_has_no_duplicate_pitch_sets():
    assert len({frozenset(q.intervals) for q in QUALITIES}) == len(QUALITIES)


def test_symbols_round_trip_and_are_unique():
    symbols = [Chord.from_index(i).symbol for i in range(N_CHORDS)]
    assert len(set(symbols)) == N_CHORDS
    assert all(chord_from_symbol(s).index == i for i, s in enumerate(symbols))


@pytest.mark.parametrize("text,symbol,kind", [
    ("G", "G", "exact"), ("Em", "Em", "exact"), ("D7", "D7", "exact"),
    ("Gd", "Gdim", "exact"), ("Ea", "Eaug", "exact"),            # Nottingham cleaned spellings
    ("D/f+", "D", "simplified"), ("Gm/bb", "Gm", "simplified"),   # inversions keep the root-position chord
    ("(E7)", "E7", "exact"), ("Bbmaj7", "Bbmaj7", "exact"),
    ("C9", "C7", "simplified"), ("Fmaj9", "Fmaj7", "simplified"), ("Am9", "Am7", "simplified"),
    ("Cadd9", "C", "simplified"), ("C6/9", "C6", "simplified"), ("G13", "G7", "simplified"),
    ("C7b9", "C7", "simplified"), ("C7#9", "C7", "simplified"), ("C5", "C", "simplified"),
    ("Caug7", "C7", "simplified"), ("Bm7b5", "Bm7b5", "exact"), ("F#m7-5", "Gbm7b5", "exact"),
])
def test_text_spellings_map_by_the_documented_rules(text, symbol, kind):
    m = map_chord(*parse_chord_text(text))
    assert m.chord.symbol == symbol and m.kind.value == kind


@pytest.mark.parametrize("label,root,intervals,bass", [
    ("C:maj", 0, (0, 4, 7), None), ("A:maj/3", 9, (0, 4, 7), 1), ("Bb:min7", 10, (0, 3, 7, 10), None),
    ("G:7/b7", 7, (0, 4, 7, 10), 5), ("C:sus4(b7)", 0, (0, 5, 7, 10), None), ("D:hdim7", 2, (0, 3, 6, 10), None),
    ("E:min/b3", 4, (0, 3, 7), 7),
])
def test_harte_labels(label, root, intervals, bass):
    assert parse_harte(label) == (root, intervals, bass)


def test_no_chord_and_garbage():
    assert parse_harte("N") == (None, (), None)
    assert parse_chord_text("N.C.")[0] is None
    assert map_chord(None, ()).kind is Mapping.UNMAPPED
    for bad in ("H7", "Cxyz", "C/H"):
        with pytest.raises(ValueError):
            parse_chord_text(bad)
    with pytest.raises(ValueError):
        parse_harte("C:weird")


def test_transposition_rotates_pitch_classes():
    for i in range(N_CHORDS):
        c = Chord.from_index(i)
        for k in range(-6, 6):
            assert set(c.transpose(k).pitch_classes) == {(p + k) % 12 for p in c.pitch_classes}
