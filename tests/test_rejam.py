"""`comper rejam` and `comper render` end to end on a tiny bundle: a MIDI melody in, a session file and audio out;
the melody comes back as played; output paths that would destroy something are refused in one line."""

import errno
import json
import os
import shutil
import stat

import mido
import pytest
from hostile_midi import one_note_then_a_note_off_far_away, type2_file

from app.cli import main
from app.engine.bundle import load_bundle
from app.engine.midifile import InputLimits, MidiFileError, read_melody
from app.recording import output, sidecar_path


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
    assert [t.name for t in mid.tracks] == ["Conductor", "Melody", "Chords", "Bass", "Drums"]
    assert sum(m.type == "note_on" and m.velocity > 0 for m in mid.tracks[1]) == 48
    chord_ons = [m for m in mid.tracks[2] if m.type == "note_on" and m.velocity > 0]
    assert chord_ons, "the model played no chord"
    first_chord_tick = sum(m.time for m in mid.tracks[2][: mid.tracks[2].index(chord_ons[0]) + 1])
    assert first_chord_tick >= 2 * mid.ticks_per_beat  # nothing during the 2 listening beats
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["seed"] == 3 and len(sidecar["tokens"]) == 24 * 4
    assert abs(sidecar["bpm"] - 100) < 1e-6
    wav = tmp_path / "jam.wav"
    assert main(["render", str(out), "-o", str(wav)]) == 0
    assert wav.stat().st_size > 44100 * 2 * 2  # more than a second of 16-bit stereo
    # the same seed gives the same session
    again = tmp_path / "again.mid"
    main(["rejam", str(melody_file), "-o", str(again), "--model", str(tiny_bundle), "--listen", "2", "--seed", "3"])
    assert json.loads(sidecar_path(again).read_text())["tokens"] == sidecar["tokens"]


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


def rejam(melody, out, bundle) -> int:
    return main(["rejam", str(melody), "-o", str(out), "--model", str(bundle), "--listen", "2", "--seed", "1"])


def one_line_error(capsys, *parts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("comper: error: ") and "\n" not in err and all(p in err for p in parts), err
    return err


def test_rejam_next_to_a_model_card_leaves_the_card(tiny_bundle, melody_file, tmp_path, capsys):
    """`-o models_copy/gapt.mid` used to overwrite the card gapt.json with the session sidecar."""
    models = tmp_path / "models_copy"
    models.mkdir()
    for f in tiny_bundle.parent.glob(tiny_bundle.stem + ".*"):
        shutil.copy(f, models)
    card = models / tiny_bundle.name
    before = card.read_bytes()
    assert rejam(melody_file, models / f"{card.stem}.mid", tiny_bundle) == 0
    assert card.read_bytes() == before and load_bundle(card).name == "tiny-test"
    assert json.loads(sidecar_path(models / f"{card.stem}.mid").read_text())["seed"] == 1
    capsys.readouterr()
    assert rejam(melody_file, card, tiny_bundle) == 2
    one_line_error(capsys, str(card), "it is a model card")
    assert card.read_bytes() == before


def test_output_paths_that_are_no_midi_file_are_refused_in_one_line(tiny_bundle, melody_file, tmp_path, capsys,
                                                                      monkeypatch):
    def never(src, dst):  # should the check ever regress, fail here rather than replace /dev/null as root
        raise AssertionError(f"os.replace onto {dst}")

    monkeypatch.setattr(output.os, "replace", never)
    song = tmp_path / "out" / "song.json"  # used to get the MIDI file overwritten by its own sidecar, exit 0
    assert rejam(melody_file, song, tiny_bundle) == 2
    one_line_error(capsys, str(song), "must end in .mid or .midi")
    folder = tmp_path / "folder.mid"
    folder.mkdir()
    assert rejam(melody_file, folder, tiny_bundle) == 2
    one_line_error(capsys, str(folder), "it is a folder")
    assert rejam(melody_file, "/dev/null", tiny_bundle) == 2
    one_line_error(capsys, "/dev/null", "it is a device")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.mid", "melody.mid"] and not any(folder.iterdir())


def test_a_full_disk_is_one_line_and_leaves_nothing(tiny_bundle, melody_file, tmp_path, capsys, full_disk):
    out = tmp_path / "out"
    full_disk(2)  # the MIDI file is written, its sidecar is not
    assert rejam(melody_file, out / "x.mid", tiny_bundle) == 2
    one_line_error(capsys, "x.mid.session.json", os.strerror(errno.ENOSPC))
    assert list(out.iterdir()) == []
    full_disk(1)
    assert main(["render", str(melody_file), "-o", str(out / "x.wav")]) == 2
    one_line_error(capsys, "x.wav", os.strerror(errno.ENOSPC))
    assert list(out.iterdir()) == []


# -- the melody as played -------------------------------------------------------------------------------------------


def played(track: mido.MidiTrack) -> list[tuple[int, int, int, int]]:
    """(on_tick, off_tick, pitch, velocity) of a track; asserts every note-on has its note-off."""
    now, open_, out = 0, {}, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            assert msg.note not in open_, f"double note-on {msg.note} at {now}"
            open_[msg.note] = (now, msg.velocity)
        elif msg.type in ("note_on", "note_off"):
            on, vel = open_.pop(msg.note)
            out.append((on, now, msg.note, vel))
    assert not open_, f"notes never ended: {open_}"
    return sorted(out)


def melody_midi(path, notes, tpb=96, end=None):
    """A one-track file of (on_tick, off_tick or None, pitch, velocity) notes; None: never released."""
    events = sorted([(on, 1, "note_on", p, v) for on, _, p, v in notes]
                    + [(off, 0, "note_off", p, 0) for _, off, p, _ in notes if off is not None])
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90)))
    now = 0
    for tick, _, kind, p, v in events:
        track.append(mido.Message(kind, note=p, velocity=v, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=(end or now) - now))
    mid.save(path)
    return path


def test_rejam_keeps_triplets_and_velocities_as_played(tiny_bundle, tmp_path):
    third = 32  # an eighth-note triplet at 96 ticks a beat
    notes = [(k * third, k * third + 30, 60 + k % 5, 20 + 4 * k) for k in range(24)]  # 8 beats of triplets
    notes.append((24 * third + 5, 26 * third, 67, 100))  # and one pushed a little off any grid
    path = melody_midi(tmp_path / "triplets.mid", notes)
    heard = read_melody(path)
    assert [f for f, (_, onset) in enumerate(heard.frames) if onset][:4] == [0, 1, 3, 4]  # the model: 16ths
    out = tmp_path / "out.mid"
    assert rejam(path, out, tiny_bundle) == 0
    mid = mido.MidiFile(out)
    scale = mid.ticks_per_beat / 96
    melody = played(mid.tracks[1])
    assert [(p, v) for _, _, p, v in melody] == [(p, v) for _, _, p, v in notes]
    for (on, off, _, _), (on_in, off_in, _, _) in zip(melody, notes):
        assert abs(on - on_in * scale) <= 1 and abs(off - off_in * scale) <= 1


def test_rejam_keeps_the_sustain_pedal_and_bends_as_played(tiny_bundle, tmp_path):
    """A take's Melody track is the input as played: the pedal (CC 64) and a bend at their ticks, not only notes."""
    notes = [(k * 48, k * 48 + 40, 60 + k % 3, 70) for k in range(16)]
    path = melody_midi(tmp_path / "pedal.mid", notes)
    mid = mido.MidiFile(path)
    track = mido.MidiTrack()
    controls = [(0, mido.Message("control_change", control=64, value=127)),
                (150, mido.Message("pitchwheel", pitch=2048)), (190, mido.Message("pitchwheel", pitch=0)),
                (383, mido.Message("control_change", control=64, value=0))]  # 383: off the 16th grid
    for msg in mido.merge_tracks([mid.tracks[0], [m.copy(time=t - (controls[i - 1][0] if i else 0))
                                                  for i, (t, m) in enumerate(controls)]]):
        track.append(msg)
    mid.tracks[0] = track
    mid.save(path)
    heard = read_melody(path).controls  # in frames (24 ticks at 96 a beat), not moved onto the grid
    assert [(round(f * 24, 6), s) for f, s, _ in heard] == [(0, 0xB0), (150, 0xE0), (190, 0xE0), (383, 0xB0)]
    out = tmp_path / "out.mid"
    assert rejam(path, out, tiny_bundle) == 0
    melody = {t.name: t for t in mido.MidiFile(out).tracks}["Melody"]
    scale, now, got = mido.MidiFile(out).ticks_per_beat / 96, 0, []
    for msg in melody:
        now += msg.time
        if msg.type in ("control_change", "pitchwheel"):
            got.append((round(now / scale), msg.type, msg.value if msg.type == "control_change" else msg.pitch))
    assert got == [(0, "control_change", 127), (150, "pitchwheel", 2048), (190, "pitchwheel", 0),
                   (383, "control_change", 0)]
    assert [(p, v) for _, _, p, v in played(melody)] == [(p, v) for _, _, p, v in notes]


def test_rejam_keeps_a_re_struck_note_and_a_note_never_released(tiny_bundle, tmp_path):
    notes = [(0, 96, 60, 90), (48, 144, 60, 70),  # struck again before its note-off: the first strike ends there,
             (192, 288, 64, 80), (288, None, 67, 100)]  # the second at the first note-off; the last is never released
    path = melody_midi(tmp_path / "overlap.mid", notes, end=480)
    heard = read_melody(path)
    assert heard.notes == [(0, 2, 60, 90), (2, 4, 60, 70), (8, 12, 64, 80), (12, 20, 67, 100)]  # in frames
    out = tmp_path / "out.mid"
    assert rejam(path, out, tiny_bundle) == 0
    melody = played(mido.MidiFile(out).tracks[1])
    assert melody == [(0, 240, 60, 90), (240, 480, 60, 70), (960, 1440, 64, 80), (1440, 2400, 67, 100)]


# -- input limits and odd files (no training: refused before a model loads, or the shipped gapt) ---------------------


def rejam_gapt(melody, out, *extra: str) -> int:
    return main(["rejam", str(melody), "-o", str(out), "--model", "gapt", "--teacher", "none", "--listen", "2",
                 *extra])


def test_a_melody_over_the_limits_is_refused_before_a_model_loads(tmp_path, capsys):
    huge = one_note_then_a_note_off_far_away(tmp_path / "huge.mid")
    assert huge.stat().st_size == 44
    out = tmp_path / "out" / "x.mid"
    # "no-such-model": had the model been looked for first, that would be the error
    assert main(["rejam", str(huge), "-o", str(out), "--model", "no-such-model"]) == 2
    one_line_error(capsys, f"{huge}: the melody lasts 2236963 frames (16ths), over the limit of 20000 (--max-frames)")
    tune = melody_midi(tmp_path / "tune.mid", [(k * 48, k * 48 + 40, 60 + k % 5, 90) for k in range(64)])  # 32 beats
    assert main(["rejam", str(tune), "-o", str(out), "--model", "no-such-model", "--max-frames", "100"]) == 2
    one_line_error(capsys, "over the limit of 100 (--max-frames)")
    assert main(["rejam", str(tune), "-o", str(out), "--model", "no-such-model", "--max-minutes", "0.2"]) == 2
    one_line_error(capsys, f"{tune}: 0.4 minutes of melody at 90 bpm, over the 0.2-minute limit (--max-minutes)")
    assert main(["rejam", str(tune), "-o", str(out), "--model", "no-such-model", "--bpm", "180",
                 "--max-minutes", "0.2"]) == 2  # the length at the tempo the re-jam runs at
    assert "no model named 'no-such-model'" in capsys.readouterr().err
    assert not out.parent.exists()
    with pytest.raises(MidiFileError, match="over the 100 bytes limit for a MIDI file: not read"):
        read_melody(tune, limits=InputLimits(max_bytes=100))
    assert main(["rejam", str(tune), "-o", str(out), "--max-minutes", "0"]) == 2  # the range of the flag's knob
    one_line_error(capsys, "--max-minutes 0.0: must be between 0.01 and 1440 minutes")


def test_a_tempo_of_zero_is_ignored_with_a_warning(tmp_path, capsys):
    """A set_tempo of 0 us per beat used to crash `rejam` (ZeroDivisionError) even with --bpm."""
    mid = mido.MidiFile()
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=0)])
    for k in range(8):
        track += [mido.Message("note_on", note=60 + k, velocity=80, time=0),
                  mido.Message("note_off", note=60 + k, time=240)]
    track.append(mido.MetaMessage("set_tempo", tempo=0, time=0))
    mid.tracks.append(track)
    path = tmp_path / "tempo0.mid"
    mid.save(path)
    out = tmp_path / "out.mid"
    assert rejam_gapt(path, out, "--bpm", "90") == 0
    err = capsys.readouterr().err
    assert err == f"comper: warning: {path}: 2 set_tempo events of 0 us per beat ignored (not a tempo)\n"
    assert json.loads(sidecar_path(out).read_text())["bpm"] == 90
    assert read_melody(path).bpm == 120  # no tempo left: the MIDI default


def test_a_tempo_or_meter_no_jam_can_have_is_replaced_with_a_warning(tmp_path):
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1),  # 60 million bpm
                                      mido.MetaMessage("time_signature", numerator=0, denominator=4),
                                      mido.Message("note_on", note=60, velocity=80),
                                      mido.Message("note_off", note=60, time=480)]))
    mid.save(tmp_path / "odd.mid")
    heard = read_melody(tmp_path / "odd.mid")
    assert (heard.bpm, heard.meter) == (120, (4, 4))
    assert heard.warnings == [f"{tmp_path / 'odd.mid'}: tempo 6e+07 bpm is outside 4..1000; 120 used (--bpm sets it)",
                              f"{tmp_path / 'odd.mid'}: time signature 0/4 is no meter; 4/4 used"]


def test_a_drums_only_file_is_refused_with_a_hint_and_drums_are_never_the_melody(tmp_path, capsys):
    mid = mido.MidiFile()
    drums = mido.MidiTrack([mido.MetaMessage("track_name", name="Kit")])
    for _ in range(8):
        drums += [mido.Message("note_on", channel=9, note=36, velocity=100),
                  mido.Message("note_off", channel=9, note=36, time=240)]
    mid.tracks.append(drums)
    path = tmp_path / "drums.mid"
    mid.save(path)
    assert main(["rejam", str(path), "-o", str(tmp_path / "x.mid"), "--model", "no-such-model"]) == 2
    one_line_error(capsys, f"{path}: its only notes are drums (MIDI channel 10), no melody to accompany; give a file "
                           f"with the melody on another channel")
    assert main(["rejam", str(path), "-o", str(tmp_path / "x.mid"), "--track", "Kit", "--model", "x"]) == 2
    one_line_error(capsys, f"{path}: track 'Kit' holds only drums (MIDI channel 10)")
    # a type-0 file: drums and the tune on one track; the melody is the tune, under the triangle
    both = mido.MidiTrack()
    for k in range(4):
        both += [mido.Message("note_on", channel=9, note=81, velocity=100),  # open triangle: above the tune
                 mido.Message("note_on", channel=0, note=60 + k, velocity=80),
                 mido.Message("note_off", channel=0, note=60 + k, time=240),
                 mido.Message("note_off", channel=9, note=81)]
    mixed = mido.MidiFile(type=0)
    mixed.tracks.append(both)
    mixed.save(tmp_path / "mixed.mid")
    assert [p for _, _, p, _ in read_melody(tmp_path / "mixed.mid").notes] == [60, 61, 62, 63]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drums.mid", "mixed.mid"]


def test_a_type_2_file_is_read_as_its_patterns_in_sequence(tmp_path):
    path = type2_file(tmp_path / "patterns.mid")
    heard = read_melody(path)
    assert [(on, off, p) for on, off, p, _ in heard.notes] == [(0, 4, 60), (4, 8, 62), (8, 12, 64), (12, 16, 65),
                                                               (16, 20, 67), (20, 24, 69)]
    assert heard.bpm == 120  # the first pattern's tempo
    assert [p for _, _, p, _ in read_melody(path, track="chorus").notes] == [67, 69]  # one pattern, named
    with pytest.raises(MidiFileError, match="no track named 'bridge' \\(tracks: 'verse', 'chorus'\\)"):
        read_melody(path, track="bridge")


def test_the_output_is_never_the_input(tmp_path, capsys):
    tune = melody_midi(tmp_path / "tune.mid", [(0, 40, 60, 90)])
    before = tune.read_bytes()
    os.link(tune, tmp_path / "same.mid")
    for target in (tune, tmp_path / "same.mid", tmp_path / "." / "tune.mid"):
        assert main(["rejam", str(tune), "-o", str(target), "--model", "no-such-model"]) == 2
        one_line_error(capsys, f"{target}: not written: it is the input file")
    assert tune.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["same.mid", "tune.mid"]
