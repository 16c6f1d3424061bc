"""POP909 parser on real songs: beat grid from beat_midi.txt, meter, key, Harte chords, monophonic melody."""

from __future__ import annotations

import shutil
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from training.data.chords import Mapping, chord_from_symbol, map_chord
from training.data.leadsheet import Key, SkipSong, SongRef
from training.data.sources import pop909


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging."""
    def boom(*_):
        raise TimeoutError(f"took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def song_dir(shared_data: Path, song_id: str) -> Path:
    return shared_data / "pop909" / "POP909" / song_id


@pytest.fixture(scope="module")
def songs(shared_data):
    return {sid: pop909.parse(SongRef("pop909", sid, str(song_dir(shared_data, sid))))
            for sid in ("001", "004", "034", "845")}


def chord_at(sheet, label: str):
    return next(c for c in sheet.chords if c.label == label)


def test_discover_lists_every_song_folder(shared_data, tmp_path):
    refs = pop909.discover(shared_data, tmp_path)
    assert len(refs) == 909
    assert [r.song_id for r in refs[:2]] == ["001", "002"] and refs[-1].song_id == "909"
    assert all(r.source == "pop909" and Path(r.path).is_dir() for r in refs)


def test_song_001_values(songs):
    s = songs["001"]
    assert (s.source, s.song_id, s.meter) == ("pop909", "001", (4, 4))
    assert s.key == Key(6, "major")  # key_audio.txt: Gb:maj
    # The first four beats are N rows in chord_midi.txt, merged into one explicit no-chord span.
    n = s.chords[0]
    assert n.label == "N" and n.root is None
    assert n.onset == pytest.approx(0.0, abs=1e-3) and n.offset == pytest.approx(4.0, abs=1e-3)
    b = s.chords[1]
    assert (b.label, b.root, b.intervals, b.bass) == ("B:maj", 11, (0, 4, 7), None)
    assert b.onset == pytest.approx(4.0, abs=1e-3)
    # Intro without melody is kept (the codec trims): first note at beat 19 (the 16th grid).
    first = s.notes[0]
    assert first.pitch == 61 and first.onset == pytest.approx(19.0, abs=0.01)
    assert len(s.notes) == 264


def test_meter_from_beat_file_not_midi_time_signature(shared_data, songs):
    """034 says 1/4 in the MIDI; beat_midi.txt has 6-beat bars split 3 + 3 -> 3/4 (module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        midi = pretty_midi.PrettyMIDI(str(song_dir(shared_data, "034") / "034.mid"))
    assert [(t.numerator, t.denominator) for t in midi.time_signature_changes] == [(1, 4)]
    s = songs["034"]
    assert s.meter == (3, 4)
    assert s.extra["first_downbeat"] == 1
    assert s.key == Key(4, "minor")  # E:min
    assert (s.chords[1].label, s.chords[1].onset) == ("E:min", pytest.approx(13.0, abs=0.01))
    # A 4-beat song whose MIDI says 2/4 is still 4/4.
    assert songs["001"].meter == (4, 4)


def test_meter_from_flags_rules():
    def every(n: int) -> np.ndarray:
        return np.arange(24) % n == 0
    assert pop909.meter_from_flags(every(2), every(4)) == (4, 4)
    assert pop909.meter_from_flags(every(3), every(6)) == (3, 4)
    assert pop909.meter_from_flags(every(2), every(6)) == (6, 4)  # not seen in POP909


def test_slash_chords_scale_degree_bass(songs):
    s = songs["845"]
    d7 = chord_at(s, "D:7/b7")  # D F# A C, C in the bass
    assert (d7.root, d7.intervals, d7.bass) == (2, (0, 4, 7, 10), 0)
    assert d7.onset == pytest.approx(20.0, abs=0.05)
    am = chord_at(s, "A:min/b3")  # A C E over C
    assert (am.root, am.bass) == (9, 0) and am.onset == pytest.approx(22.0, abs=0.05)
    d5 = chord_at(s, "D:maj/5")  # over A
    assert (d5.root, d5.bass) == (2, 9)
    c3 = chord_at(songs["004"], "C#:maj/3")  # over E# = F
    assert (c3.root, c3.bass) == (1, 5)
    m = map_chord(d7.root, d7.intervals, d7.bass)
    assert m.kind is Mapping.SIMPLIFIED and m.chord == chord_from_symbol("D7")


def test_chords_are_beat_aligned_and_contiguous(songs):
    for sid, s in songs.items():
        for c in s.chords:
            assert abs(c.onset - round(c.onset)) < 0.05, (sid, c)
        for a, b in zip(s.chords, s.chords[1:]):
            assert b.onset == pytest.approx(a.offset, abs=1e-6)
            assert (a.root, a.intervals, a.bass) != (b.root, b.intervals, b.bass)  # repeats merged


def test_overlapping_melody_made_monophonic(shared_data, songs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        midi = pretty_midi.PrettyMIDI(str(song_dir(shared_data, "034") / "034.mid"))
    raw = next(i for i in midi.instruments if i.name == "MELODY").notes
    overlaps = [(a, b) for a, b in zip(raw, raw[1:]) if a.end > b.start + 1e-6]
    assert len(overlaps) == 21
    s = songs["034"]
    assert all(a.offset <= b.onset + 1e-9 for a, b in zip(s.notes, s.notes[1:]))
    # The first overlap: E5 (76) at 25.312 s rings past B5 (83) at 25.607 s -> cut at B5's onset.
    a, b = overlaps[0]
    assert (a.pitch, b.pitch) == (76, 83)
    beat_times = pop909.read_beats(song_dir(shared_data, "034") / "beat_midi.txt")[0]
    onset_a = float(pop909.seconds_to_beats([a.start], beat_times)[0])
    i = next(i for i, n in enumerate(s.notes) if n.pitch == 76 and abs(n.onset - onset_a) < 1e-6)
    assert s.notes[i].offset == s.notes[i + 1].onset and s.notes[i + 1].pitch == 83


def test_seconds_to_beats_extrapolates_with_edge_intervals():
    beats = np.array([1.0, 1.5, 2.5, 3.0])
    got = pop909.seconds_to_beats([0.5, 1.25, 2.0, 3.0, 4.0], beats)
    assert got.tolist() == pytest.approx([-1.0, 0.5, 1.5, 3.0, 5.0])


def _copy_song(shared_data: Path, tmp_path: Path, song_id: str = "001") -> Path:
    dest = tmp_path / song_id
    shutil.copytree(song_dir(shared_data, song_id), dest)
    for p in dest.iterdir():
        p.chmod(0o644)
    return dest


def test_garbage_midi_raises_naming_the_file(shared_data, tmp_path):
    d = _copy_song(shared_data, tmp_path)
    (d / "001.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage" + bytes(range(256)) * 4)
    with deadline(10), pytest.raises(ValueError, match="001.mid"):
        pop909.parse(SongRef("pop909", "001", str(d)))


def test_truncated_chord_line_raises_naming_the_file(shared_data, tmp_path):
    d = _copy_song(shared_data, tmp_path)
    text = (d / "chord_midi.txt").read_text()
    (d / "chord_midi.txt").write_text(text[: text.index("\n", 200) + 8])  # cut inside the next line
    with deadline(10), pytest.raises(ValueError, match="chord_midi.txt"):
        pop909.parse(SongRef("pop909", "001", str(d)))


def test_unknown_label_raises_no_c_major_fallback(shared_data, tmp_path):
    d = _copy_song(shared_data, tmp_path)
    text = (d / "chord_midi.txt").read_text()
    (d / "chord_midi.txt").write_text(text.replace("B:maj", "B:maj13", 1))
    with pytest.raises(ValueError, match=r"chord_midi\.txt.*'B:maj13'"):
        pop909.parse(SongRef("pop909", "001", str(d)))


def test_missing_melody_track_is_skipped(shared_data, tmp_path):
    d = _copy_song(shared_data, tmp_path)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0, name="PIANO")
    piano.notes.append(pretty_midi.Note(100, 60, 1.0, 2.0))
    midi.instruments.append(piano)
    midi.write(str(d / "001.mid"))
    with pytest.raises(SkipSong, match="no MELODY track"):
        pop909.parse(SongRef("pop909", "001", str(d)))
