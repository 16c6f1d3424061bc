"""The cache build end to end on a few real songs per source, its error handling, and the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import PER_SOURCE

from training.cli import main
from training.data import cache as cache_mod
from training.data import tokens as T
from training.data.dataset import WindowConfig, WindowDataset
from training.data.sources import SOURCES


def test_build_keeps_songs_from_every_source(small_cache):
    cache, stats = small_cache
    assert set(stats["sources"]) == set(SOURCES)
    for name, s in stats["sources"].items():
        assert s["songs_found"] == PER_SOURCE, name
        assert s["songs_kept"] >= 2, (name, s["skip_reasons"])
        assert s["frames"] > 0 and s["melody_notes"] > 0
    for name in ("pop909", "nottingham", "chord_melody_dataset", "openewld"):
        assert stats["sources"][name]["mapped_fraction"] > 0.95, name
    assert stats["sources"]["hooktheory"]["mapped_fraction"] is None  # melody only: no chord time at all


def test_cache_layout_is_consistent(small_cache):
    cache, _ = small_cache
    assert len(cache.melody) == len(cache.chord) == cache.songs[-1]["stop"]
    for i, s in enumerate(cache.songs):
        f = cache.frames(i)
        assert len(f) == s["stop"] - s["start"] > 0
        assert s["split"] in {"train", "valid", "test", "ood"}
        assert (s["split"] == "ood") == (s["source"] == "openewld")
        assert s["has_chords"] == (s["source"] != "hooktheory")
        # well-formed frames: a hold continues the same value, onsets only on sounding frames
        for values, onset in ((f.melody, f.melody_onset), (f.chord, f.chord_onset)):
            assert not onset[values < 0].any()
            changed = np.concatenate([[True], values[1:] != values[:-1]])
            assert onset[changed & (values >= 0)].all()


def test_training_windows(small_cache):
    cache, _ = small_cache
    split = cache.songs[[s["source"] for s in cache.songs].index("pop909")]["split"]
    ds = WindowDataset(cache, split, sources=("pop909",), seed=1)
    item = ds[0]
    tok = item["tokens"].numpy()
    assert tok.shape == (514,) and tok[0] == T.BOS
    n = int(item["length"])
    chords, mel = tok[1:1 + 2 * n:2], tok[2:2 + 2 * n:2]
    assert all(T.is_chord(t) or t == T.SILENCE for t in chords)
    assert all(T.is_note(t) or t == T.SILENCE for t in mel)
    assert np.all(tok[2 + 2 * n:] <= T.EOS)  # only EOS / PAD after the window


def test_tiled_view_reproduces_the_song(small_cache):
    cache, _ = small_cache
    idx = cache.select(with_chords=True)[0]
    song = cache.songs[idx]
    ds = WindowDataset(cache, song["split"], sources=(song["source"],), augment=False,
                       config=WindowConfig(window=64, order="separate"))
    own = [k for k in range(len(ds)) if ds.song_ids[ds.item_song[k]] == idx]
    mel = np.concatenate([ds[k]["melody"].numpy()[1:1 + int(ds[k]["length"])] for k in own])
    from training.data.codec import melody_tokens
    expected = melody_tokens(cache.frames(idx))
    # tiles restart holds as onsets at each window start; compare pitches
    to_pitch = lambda t: np.where(t == T.SILENCE, -1, (t - T.NOTE_HOLD) % 128)
    assert np.array_equal(to_pitch(mel), to_pitch(expected))
    assert ds[own[-1]]["melody"].numpy()[1 + int(ds[own[-1]]["length"])] == T.EOS


def test_stats_cli_json(small_cache, capsys):
    cache, stats = small_cache
    assert main(["data", "stats", "--cache", str(cache.path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["songs_kept"] == stats["songs_kept"] == len(cache.songs)
    assert main(["data", "stats", "--cache", str(cache.path)]) == 0
    assert "most common chords" in capsys.readouterr().out


def test_a_corrupt_song_is_skipped_with_its_name_and_counted(shared_data, tmp_path, capsys):
    data = tmp_path / "data"
    good = next((shared_data / "openewld" / "dataset").rglob("*.mxl"))
    (data / "openewld" / "dataset" / "A" / "Good").mkdir(parents=True)
    shutil.copy(good, data / "openewld" / "dataset" / "A" / "Good" / "Good.mxl")
    bad_dir = data / "openewld" / "dataset" / "B" / "Brökèn"
    bad_dir.mkdir(parents=True)
    (bad_dir / "Brökèn.mxl").write_bytes(b"PK\x03\x04 this is not a zip archive")
    assert main(["data", "build", "--data", str(data), "--out", str(tmp_path / "c"), "--processes", "1"]) == 0
    err = capsys.readouterr().err
    assert "Brökèn.mxl" in err and "skipped" in err
    s = cache_mod.load(tmp_path / "c").stats["sources"]["openewld"]
    assert s["songs_kept"] == 1 and s["songs_skipped"] == 1 and sum(s["skip_reasons"].values()) == 1


def test_missing_data_dir_is_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "training.cli", "data", "build", "--data", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "nope" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "training.cli", "data", "build", "--data", str(tmp_path),
                        "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert r.returncode == 2 and "none of the datasets" in r.stderr


def test_loading_a_folder_that_is_not_a_cache_names_the_file(tmp_path):
    with pytest.raises(cache_mod.DataError, match="frames.npz"):
        cache_mod.load(tmp_path)
