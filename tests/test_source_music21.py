"""The music21-based source parsers (Nottingham ABC, Chord-Melody-Dataset, OpenEWLD) on real files.

Expected values were worked out by hand from the source text (bar lengths, pickups, repeats), so a parser that
drifts in time, misreads a chord spelling or mis-expands a repeat fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.leadsheet import ChordSpan, LeadSheet, SkipSong, SongRef
from training.data.sources import chord_melody_dataset, nottingham, openewld

EPS = 1e-6


def check_lead_sheet(ls: LeadSheet) -> None:
    assert ls.notes and ls.chords
    for a, b in zip(ls.notes, ls.notes[1:]):
        assert a.onset < b.onset and a.offset <= b.onset + EPS, "melody must be monophonic"
    for n in ls.notes:
        assert 0 <= n.onset < n.offset and 0 <= n.pitch <= 127
    for a, b in zip(ls.chords, ls.chords[1:]):
        assert abs(a.offset - b.onset) < EPS, "chord spans must be sorted, touching, non-overlapping"
        assert (a.root, a.intervals, a.bass) != (b.root, b.intervals, b.bass), "repeated chords must be merged"
    assert all(0 <= c.onset < c.offset for c in ls.chords)
    assert ls.notes[-1].offset <= ls.chords[-1].offset + EPS, "the chords must last as long as the melody"


def span_at(ls: LeadSheet, beat: float) -> ChordSpan:
    return next(c for c in ls.chords if c.onset - EPS <= beat < c.offset - EPS)


# --- Nottingham ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nottingham_refs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SongRef]:
    refs = nottingham.discover(shared_data, tmp_path_factory.mktemp("work"))
    return {r.song_id: r for r in refs}


@pytest.fixture(scope="module")
def tune(nottingham_refs: dict[str, SongRef]):
    cache: dict[str, LeadSheet] = {}

    def get(song_id: str) -> LeadSheet:
        if song_id not in cache:
            cache[song_id] = nottingham.parse(nottingham_refs[song_id])
            check_lead_sheet(cache[song_id])
        return cache[song_id]

    return get


def test_nottingham_discover_one_ref_per_tune(nottingham_refs: dict[str, SongRef]) -> None:
    assert len(nottingham_refs) == 1034
    ref = nottingham_refs["jigs/12"]
    assert Path(ref.path).name == "jigs.abc" and ref.part == 11 and ref.source == "nottingham"


def test_nottingham_pickup_six_eight_and_repeats(tune) -> None:
    ls = tune("jigs/1")  # "A and D": pickup f (1/8), 6/8, A part |[1 ... :|[2 ...||, B part without |:
    assert ls.meter == (6, 8) and ls.key is not None and (ls.key.tonic, ls.key.mode) == (9, "major")
    assert ls.extra["pickup"] == 0.5
    assert (ls.notes[0].onset, ls.notes[0].offset, ls.notes[0].pitch) == (0.0, 0.5, 78)  # F#5
    first = ls.chords[0]
    assert (first.onset, first.label, first.root, first.intervals) == (0.5, "A", 9, (0, 4, 7))
    assert first.offset == 9.5  # three 6/8 bars of A = 9 quarter-note beats
    assert (span_at(ls, 9.5).label, span_at(ls, 11.0).label) == ("Bm", "E7")
    # A A B B: 24 + 24.5 (second ending 3 beats) + 24 + 23.5 beats; music21 alone plays A A B A A B (144.5).
    assert ls.end_beat == 96.0
    assert span_at(ls, 48.5).label == "D"  # the B part starts after both A passes


def test_nottingham_repeat_without_start_restarts_after_the_previous_repeat(tune) -> None:
    # Londonderry Hornpipe: six 8-bar parts A..F, each "<pickup>| ... :|" with no "|:" and no double bar.
    # Played A A B B C C D D E E F F: 5 parts x 2 x 32 beats + part D (its last bar is full) 2 x 33 beats.
    ls = tune("hpps/34")
    assert ls.end_beat == 386.0
    starts = {n.onset: n.pitch for n in ls.notes}
    assert starts[0.0] == starts[32.0] == 69  # A part pickup "AG" (A4), played again on the repeat
    assert starts[64.0] == starts[96.0] == 78  # B part pickup "fg" (F#5), twice
    assert starts[128.0] == starts[160.0] == 69  # C part pickup "AG"


def test_nottingham_diminished_gd(tune) -> None:
    ls = tune("waltzes/35")  # 3/4: "G"BD/2E/2G/2B/2|"C7"_B3|"G"BD/2E/2G/2B/2|"Gd"_B3|
    assert ls.meter == (3, 4) and ls.extra["pickup"] == 0.0
    gd = [c for c in ls.chords if c.label == "Gd"]
    assert gd and all((c.root, c.intervals, c.bass) == (7, (0, 3, 6), None) for c in gd)
    assert (gd[0].onset, gd[0].offset) == (9.0, 12.0)
    assert [(n.onset, n.pitch) for n in ls.notes if 9.0 <= n.onset < 12.0] == [(9.0, 70)]  # the Bb under it


def test_nottingham_augmented_ea(tune) -> None:
    ls = tune("jigs/198")  # pickup 1/2, first ending of the |: part: "E"g2g "Ea"gfe
    ea = [c for c in ls.chords if c.label == "Ea"]
    assert [(c.onset, c.offset, c.root, c.intervals) for c in ea] == [(68.0, 69.5, 4, (0, 4, 8))]
    ad = [c for c in ls.chords if c.label == "Ad"]
    assert ad and (ad[0].root, ad[0].intervals) == (9, (0, 3, 6))


def test_nottingham_lower_case_bass_notes(tune) -> None:
    ls = tune("hpps/6")  # dB|"D"BAFA DAFA|"G"BA(3Bcd "A7"e2de|"D"fgaf "A7/e"egfe|"D/f+"dfed ...
    a7e, dfs = span_at(ls, 11.0), span_at(ls, 13.0)
    assert (a7e.label, a7e.root, a7e.intervals, a7e.bass) == ("A7/e", 9, (0, 4, 7, 10), 4)
    assert (dfs.onset, dfs.label, dfs.root, dfs.intervals, dfs.bass) == (13.0, "D/f+", 2, (0, 4, 7), 6)


def test_nottingham_flat_bass(tune) -> None:
    ls = tune("jigs/157")  # B/2A/2|"Gm"GBd ^c2d|"Gm"GBd ^c2d|"Gm"gdd "Gm/bb"gdd|
    c = span_at(ls, 8.0)
    assert (c.onset, c.offset, c.label, c.root, c.intervals, c.bass) == (8.0, 9.5, "Gm/bb", 7, (0, 3, 7), 10)
    assert ls.key is not None and (ls.key.tonic, ls.key.mode) == (7, "minor")


def test_nottingham_parenthesised_alternative_chord(tune) -> None:
    ls = tune("jigs/77")  # "(E7)"cde ||"A"f2e ...: the optional chord over the pickup is used, label kept
    first = ls.chords[0]
    assert (first.onset, first.offset, first.label, first.root, first.intervals) == (0.0, 1.5, "(E7)", 4,
                                                                                    (0, 4, 7, 10))
    assert ls.chords[1].label == "A" and ls.extra["pickup"] == 1.5
    assert (ls.notes[0].onset, ls.notes[0].pitch) == (0.0, 73)  # C#5


def test_nottingham_stacked_and_spaced_chords(tune) -> None:
    ls = tune("slip/6")  # "D m" is read as Dm
    assert any((c.label, c.root, c.intervals) == ("Dm", 2, (0, 3, 7)) for c in ls.chords)


def test_nottingham_double_colon_bar_keeps_the_next_bar(tune) -> None:
    # 2/4, A part "...G::" then B part "G"g3/4e/4 ...:| -- music21 drops the bar after "::" unless rewritten.
    ls = tune("reelsa-c/19")
    assert ls.end_beat == 64.0  # (8 bars A) x2 + (8 bars B) x2, 2 beats a bar
    starts = {n.onset: n.pitch for n in ls.notes}
    assert starts[0.0] == starts[16.0] == 71 and starts[32.0] == starts[48.0] == 79


def test_nottingham_tune_without_chords_is_skipped(nottingham_refs: dict[str, SongRef]) -> None:
    with pytest.raises(SkipSong, match="no chords"):
        nottingham.parse(nottingham_refs["jigs/6"])


def test_nottingham_clean_tune_text() -> None:
    text, chords = nottingham.clean_tune('X:1\nN:"From a song"\nK:G\n"Em""C"edc " ""G"BAG|"(E7)"d2::\n')
    assert chords == ["Em", "(E7)"]
    assert text == 'X:1\nN:"From a song"\nK:G\n"C"edc BAG|"C"d2:||:\n'


# --- Chord-Melody-Dataset -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cmd_refs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SongRef]:
    work = tmp_path_factory.mktemp("work")
    refs = chord_melody_dataset.discover(shared_data, work)
    assert (work / "chord_melody_dataset" / "a_smooth_one" / "c.xml").is_file()
    assert chord_melody_dataset.discover(shared_data, work) == refs  # second call: already extracted
    return {r.song_id: r for r in refs}


def test_cmd_discover_extracts_the_tarball(cmd_refs: dict[str, SongRef]) -> None:
    assert len(cmd_refs) == 473
    assert Path(cmd_refs["a_smooth_one"].path).name == "c.xml"


def test_cmd_first_empty_bar_and_half_bar_chords(cmd_refs: dict[str, SongRef]) -> None:
    ls = chord_melody_dataset.parse(cmd_refs["a_smooth_one"])
    check_lead_sheet(ls)
    # bar 1 holds only a <forward>: it is cut, so bar 2's first note (A5) and chord start at 0
    assert (ls.notes[0].onset, ls.notes[0].offset, ls.notes[0].pitch) == (0.0, 0.5, 81)
    got = [(c.onset, c.offset, c.root, c.intervals) for c in ls.chords[:3]]
    # F#m7b5 | Fm7 (second symbol of bar 2 at beat 2, whatever its OCR <offset>) | C written twice in bar 3
    assert got == [(0.0, 2.0, 6, (0, 3, 6, 10)), (2.0, 4.0, 5, (0, 3, 7, 10)), (4.0, 8.0, 0, (0, 4, 7))]
    assert ls.meter == (4, 4) and ls.key is not None and (ls.key.tonic, ls.key.mode) == (0, "major")
    assert all(c.onset % 2.0 == 0 for c in ls.chords)  # the format's half-bar chord grid


@pytest.mark.parametrize("song_id", ["all_of_me", "body_and_soul", "candle_in_the_wind"])
def test_cmd_more_songs(cmd_refs: dict[str, SongRef], song_id: str) -> None:
    ls = chord_melody_dataset.parse(cmd_refs[song_id])
    check_lead_sheet(ls)
    assert len(ls.chords) > 10 and all(c.onset % 2.0 == 0 for c in ls.chords)


def test_cmd_key_from_file_name() -> None:
    k = chord_melody_dataset.key_from_file_name(Path("x/ds.xml"))
    assert (k.tonic, k.mode) == (3, "major")
    assert chord_melody_dataset.key_from_file_name(Path("as.xml")).tonic == 10


# --- OpenEWLD -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ewld_refs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SongRef]:
    refs = openewld.discover(shared_data, tmp_path_factory.mktemp("work"))
    assert len(refs) == 502
    return {r.song_id: r for r in refs}


def test_openewld_non_ascii_path(ewld_refs: dict[str, SongRef]) -> None:
    ls = openewld.parse(ewld_refs["Alfred_Hedenstierna-Wilhelm_Åström/Hjärtats_saga"])
    check_lead_sheet(ls)
    assert ls.meter == (6, 8) and ls.key is not None and (ls.key.tonic, ls.key.mode) == (5, "major")
    # bar 1: harmony F, rests (2.5 beats), then A4 as an eighth
    assert (ls.notes[0].onset, ls.notes[0].offset, ls.notes[0].pitch) == (2.5, 3.0, 69)
    assert (ls.chords[0].onset, ls.chords[0].label, ls.chords[0].root, ls.chords[0].intervals) == (0.0, "F", 5,
                                                                                                 (0, 4, 7))


def test_openewld_punctuated_path_with_chords(ewld_refs: dict[str, SongRef]) -> None:
    song_id = "Fred_E._Ahlert-Roy_Turk/I'll_Get_By_(As_Long_as_I_Have_You)"
    ls = openewld.parse(ewld_refs[song_id])
    check_lead_sheet(ls)
    assert len(ls.chords) > 10 and ls.song_id == song_id


def test_openewld_malformed_first_ending_is_expanded(ewld_refs: dict[str, SongRef]) -> None:
    # [1 on bar 32 only, :| after bar 33, [2 on bar 34: stretched so music21 can expand the repeat
    ls = openewld.parse(ewld_refs["Alfredo_Le_Pera-Carlos_Gardel/Por_una_cabeza"])
    check_lead_sheet(ls)
    assert ls.extra["repeats"] == "expanded"


def test_openewld_seven_sus_is_a_dominant_sus(ewld_refs: dict[str, SongRef]) -> None:
    # <kind text="7sus">suspended-fourth</kind> + <degree> add 7: the seventh is minor (music21 says major)
    ls = openewld.parse(ewld_refs["Bert_Kalmar-Harry_Ruby/Three_Little_Words"])
    check_lead_sheet(ls)
    sus = [c for c in ls.chords if "sus add 7" in c.label]
    assert [(c.onset, c.label, c.root, c.intervals) for c in sus] == [(72.0, "Csus add 7 add 9", 0, (0, 2, 5, 7, 10))]


# --- unreadable files ---------------------------------------------------------------------------------------


GARBAGE = bytes(range(256)) * 8 + b'<not xml "C" X: ]]] |: :|'


@pytest.mark.parametrize("module, suffix, data", [
    (openewld, ".mxl", GARBAGE),
    (chord_melody_dataset, ".xml", GARBAGE),
    (nottingham, ".abc", GARBAGE),
    (nottingham, ".abc", b'X: 1\nT:Garbage\nK:G\n"G"' + GARBAGE + b"\n"),
])
def test_corrupt_file_raises(tmp_path: Path, module, suffix: str, data: bytes) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(data)
    with pytest.raises(Exception):  # noqa: B017 - music21 raises types of its own; the cache skips on any
        module.parse(SongRef(module.NAME, "corrupt", str(path), 0 if suffix == ".abc" else None))
