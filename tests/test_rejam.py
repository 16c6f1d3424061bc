"""`comper rejam` and `comper render` end to end on a tiny bundle: a MIDI melody in, a session file and audio out."""

import json

import mido
import pytest

from app.cli import main


@pytest.fixture
def melody_file(tmp_path):
    mid = mido.MidiFile()
    meta, lead = mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [meta, lead]
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)))
    lead.name = "Lead"
    for i in range(48):
        p = [60, 64, 67, 72][i % 4]
        lead.append(mido.Message("note_on", note=p, velocity=80, time=0))
        lead.append(mido.Message("note_off", note=p, velocity=0, time=mid.ticks_per_beat // 2))
    path = tmp_path / "melody.mid"
    mid.save(path)
    return path


def test_rejam_writes_a_session_and_render_sounds_it(tiny_bundle, melody_file, tmp_path, capsys):
    out = tmp_path / "jam.mid"
    assert main(["rejam", str(melody_file), "-o", str(out), "--model", str(tiny_bundle), "--listen", "2",
                 "--seed", "3"]) == 0
    mid = mido.MidiFile(out)
    assert [t.name for t in mid.tracks] == ["Conductor", "Melody", "Chords", "Bass"]
    assert sum(m.type == "note_on" and m.velocity > 0 for m in mid.tracks[1]) == 48
    chord_ons = [m for m in mid.tracks[2] if m.type == "note_on" and m.velocity > 0]
    assert chord_ons, "the model played no chord"
    first_chord_tick = sum(m.time for m in mid.tracks[2][: mid.tracks[2].index(chord_ons[0]) + 1])
    assert first_chord_tick >= 2 * mid.ticks_per_beat  # nothing during the 2 listening beats
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["seed"] == 3 and len(sidecar["tokens"]) == 24 * 4
    assert abs(sidecar["bpm"] - 100) < 1e-6
    wav = tmp_path / "jam.wav"
    assert main(["render", str(out), "-o", str(wav)]) == 0
    assert wav.stat().st_size > 44100 * 2 * 2  # more than a second of 16-bit stereo
    # the same seed gives the same session
    again = tmp_path / "again.mid"
    main(["rejam", str(melody_file), "-o", str(again), "--model", str(tiny_bundle), "--listen", "2", "--seed", "3"])
    assert json.loads(again.with_suffix(".json").read_text())["tokens"] == sidecar["tokens"]


def test_bad_files_are_one_clear_line(tiny_bundle, melody_file, tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    assert main(["rejam", str(bad), "-o", str(tmp_path / "x.mid"), "--model", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.mid" in err and "\n" not in err
    assert main(["render", str(bad), "-o", str(tmp_path / "x.wav")]) == 2
    assert "bad.mid" in capsys.readouterr().err
    assert main(["rejam", str(melody_file), "-o", str(tmp_path / "x.mid"), "--model", "no-such-model"]) == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err
