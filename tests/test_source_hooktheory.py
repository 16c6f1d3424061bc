"""Hooktheory: the JSON format (sample record) and the melody-only MIDI clips, checked against each other."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from training.data.leadsheet import Key, SkipSong, SongRef
from training.data.sources import hooktheory

SAMPLE_ID = "qveoYyGGodn"


@pytest.fixture(scope="module")
def sample_path(shared_data) -> Path:
    return shared_data / "hooktheory" / "format_sample" / f"Hooktheory_sample_{SAMPLE_ID}.json"


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory) -> dict[str, SongRef]:
    workdir = tmp_path_factory.mktemp("work")
    return {r.song_id: r for r in hooktheory.discover(shared_data, workdir)}


def test_discover_extracts_all_three_splits(clips, shared_data):
    assert len(clips) == 16373
    splits = [sid.split("/")[0] for sid in clips]
    assert (splits.count("train"), splits.count("valid"), splits.count("test")) == (13560, 1333, 1480)
    ref = clips[f"train/{SAMPLE_ID}"]
    assert ref.source == "hooktheory" and ref.path.endswith(f"hooktheory/train/{SAMPLE_ID}.mid")
    # A second discover over the same workdir reuses the extraction.
    workdir = Path(ref.path).parents[2]
    marker = workdir / "hooktheory" / "train" / ".extracted"
    before = marker.stat().st_mtime_ns
    assert len(hooktheory.discover(shared_data, workdir)) == 16373
    assert marker.stat().st_mtime_ns == before


def test_load_json_fields(sample_path):
    (s,) = hooktheory.load_json(sample_path)
    assert (s.source, s.song_id, s.extra) == ("hooktheory", SAMPLE_ID, {"split": "train"})
    assert s.meter == (4, 4) and s.key == Key(2, "major")  # tonic 2, intervals 2-2-1-2-2-2
    assert len(s.notes) == 60 and len(s.chords) == 22
    first = s.notes[0]
    assert (first.onset, first.offset, first.pitch) == (1.0, 2.0, 71)  # pitch_class 11, octave 0 -> B4
    assert s.notes[-1].offset == 42.0
    # Harmony: root + stacked intervals, inversion k -> k-th chord tone in the bass.
    c0, c1, c4 = s.chords[0], s.chords[1], s.chords[4]
    assert (c0.onset, c0.offset, c0.root, c0.intervals, c0.bass) == (0.0, 2.0, 7, (0, 3, 7), 10)  # Gm/Bb
    assert (c1.root, c1.intervals, c1.bass) == (9, (0, 4, 7), 4)  # A/E (2nd inversion)
    assert (c4.onset, c4.root, c4.intervals, c4.bass) == (8.0, 7, (0, 4, 7), None)  # G, root position
    assert c0.label == "G(3,4)/inv1"


def test_harmony_span_seventh_inversions():
    h = {"onset": 4, "offset": 8, "root_pitch_class": 2, "root_position_intervals": [4, 3, 3], "inversion": 3}
    c = hooktheory.harmony_span(h)
    assert (c.root, c.intervals, c.bass) == (2, (0, 4, 7, 10), 0)  # D7/C
    c = hooktheory.harmony_span(h | {"inversion": 0})
    assert c.bass is None and c.label == "D(4,3,3)"


def test_json_pitch_convention_and_alignment_match_the_midi_clip(sample_path, clips):
    """JSON beats -> seconds via alignment.refined must land on the MIDI clip's notes (pitches equal too)."""
    record = json.loads(sample_path.read_text())[SAMPLE_ID]
    refined = record["alignment"]["refined"]
    (js,) = hooktheory.load_json(sample_path)
    markers, raw = hooktheory.read_clip(clips[f"train/{SAMPLE_ID}"].path)
    assert [p for _, _, p in raw] == [n.pitch for n in js.notes]
    expected = np.interp([n.onset for n in js.notes], refined["beats"], refined["times"])
    assert np.abs(np.array([a for a, _, _ in raw]) - expected).max() < 0.005
    assert markers[0] == pytest.approx(refined["times"][0], abs=0.005)  # SEGMENT start = beat 0
    assert markers[1] == pytest.approx(refined["times"][-1], abs=0.005)  # end = beat num_beats


def test_estimated_beats_match_the_json(sample_path, clips):
    record = json.loads(sample_path.read_text())[SAMPLE_ID]
    true_period = float(np.mean(np.diff(record["alignment"]["refined"]["times"])))  # 0.645 s
    (js,) = hooktheory.load_json(sample_path)
    s = hooktheory.parse(clips[f"train/{SAMPLE_ID}"])
    assert s.chords is None and s.extra["split"] == "train"
    assert abs(60.0 / s.extra["bpm"] / true_period - 1) < 0.03
    assert s.extra["grid_error"] < 0.02
    assert [round(4 * n.onset) for n in s.notes] == [round(4 * n.onset) for n in js.notes]
    assert [round(4 * n.offset) for n in s.notes] == [round(4 * n.offset) for n in js.notes]
    assert [n.pitch for n in s.notes] == [n.pitch for n in js.notes]  # SEGMENT markers are not melody


def test_clips_pretty_midi_calls_corrupt_are_read(clips):
    """Two valid-split clips fail in pretty_midi (tick > 1e7): their segments just start 52 min into the video."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sid in ("valid/RzojXRYAgDe", "valid/YAg-XAdamle"):
            with pytest.raises(ValueError, match="likely corrupt"):
                pretty_midi.PrettyMIDI(clips[sid].path)
    a = hooktheory.parse(clips["valid/YAg-XAdamle"])
    assert len(a.notes) == 36 and a.notes[0].pitch == 61 and a.notes[0].onset == 0.0
    assert a.extra["grid_error"] < 0.05 and a.end_beat == pytest.approx(32.0, abs=0.01)
    b = hooktheory.parse(clips["valid/RzojXRYAgDe"])
    assert [n.pitch for n in b.notes[:4]] == [76, 74, 77, 76] and len(b.notes) == 15


def test_unreadable_clip_is_skipped_with_reason(tmp_path):
    bad = tmp_path / "garbage.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x10\x00MTrk\xff\xff\xff\xff" + bytes(range(200)))
    with pytest.raises(SkipSong, match=r"^corrupt MIDI \(.*garbage\.mid"):
        hooktheory.parse(SongRef("hooktheory", "train/garbage", str(bad)))


def test_clip_without_a_16th_grid_is_skipped(clips):
    with pytest.raises(SkipSong, match="no 16th-note beat grid"):  # runs of 32nd notes
        hooktheory.parse(clips["train/JkmZ-XM_oqn"])


def write_clip(path: Path, beat_times: list[float], notes: list[tuple[float, float, int]]) -> None:
    """A clip in the Sheet Sage layout: 60 bpm, 4096 ticks per second; notes given in beats."""
    def tick(beat: float) -> int:
        return round(4096 * float(np.interp(beat, np.arange(len(beat_times)), beat_times)))

    midi = mido.MidiFile(ticks_per_beat=4096)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1000000)]))
    events = {"SEGMENT": [], "MELODY": []}
    for t in (0, len(beat_times) - 1):
        events["SEGMENT"] += [(tick(t), 1, 75, 9), (tick(t) + 1, 0, 75, 9)]
    for on, off, p in notes:
        events["MELODY"] += [(tick(on), 1, p, 1), (tick(off), 0, p, 1)]
    for name, evs in events.items():
        track, now = mido.MidiTrack([mido.MetaMessage("track_name", name=name)]), 0
        for t, is_on, p, ch in sorted(evs, key=lambda e: (e[0], e[1])):
            track.append(mido.Message("note_on", channel=ch, note=p, velocity=100 * is_on, time=t - now))
            now = t
        midi.tracks.append(track)
    midi.save(path)


def test_tracks_a_drifting_tempo(tmp_path):
    """8th-note melody over 32 beats accelerating 100 -> 112 bpm with +-2 % beat jitter: a uniform grid drifts a
    whole 16th by the end; the tracker keeps every onset on its 16th."""
    rng = np.random.default_rng(0)
    periods = np.linspace(0.6, 60 / 112, 32) * (1 + rng.uniform(-0.02, 0.02, 32))
    beats = np.concatenate([[3.0], 3.0 + np.cumsum(periods)]).tolist()
    rhythm = [0, 0.5, 1, 1.75, 2, 3, 3.5]  # one bar, repeated
    notes = [(bar * 4 + x, bar * 4 + x + 0.25, 60 + (i % 5)) for bar in range(8) for i, x in enumerate(rhythm)]
    write_clip(tmp_path / "drift.mid", beats, notes)
    s = hooktheory.parse(SongRef("hooktheory", "train/drift", str(tmp_path / "drift.mid")))
    assert [round(4 * n.onset) for n in s.notes] == [round(4 * on) for on, _, _ in notes]
    assert s.extra["grid_error"] < 0.03


def test_slow_tempo_is_doubled(tmp_path):
    """Half notes at 60 bpm fit 60 and 120 bpm equally; the estimate prefers 70-160 (120)."""
    beats = [1.0 + i for i in range(17)]
    notes = [(b, b + 2, 64) for b in range(0, 16, 2)]
    write_clip(tmp_path / "slow.mid", beats, notes)
    s = hooktheory.parse(SongRef("hooktheory", "test/slow", str(tmp_path / "slow.mid")))
    assert s.extra["bpm"] == pytest.approx(120, rel=0.02)
    assert [n.onset for n in s.notes[:3]] == pytest.approx([0, 4, 8], abs=0.01)
