"""`comper reharmonize`: the offline teacher's second opinion on a take, saved beside it as a session of its own,
with the harmony of both versions against the take's melody."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import mido
import pytest

from app.cli import main
from app.engine.bundle import shipped_teacher
from app.engine.teacher import OnnxTeacher
from app.leadsheet.reharmonize import TEACHER_TRACK, default_output, lane, second_opinion
from app.leadsheet.sheet import read_leadsheet
from app.recording.output import sidecar_path

ODE = Path(__file__).resolve().parents[1] / "assets" / "melodies" / "ode_to_joy.mid"


@pytest.fixture(scope="module")
def take(tmp_path_factory) -> Path:
    """A real re-jam of the demo melody with the shipped default model, through the CLI."""
    out = tmp_path_factory.mktemp("take") / "ode.mid"
    assert main(["rejam", str(ODE), "-o", str(out), "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def teacher() -> OnnxTeacher:
    return OnnxTeacher(shipped_teacher())


def messages(track: mido.MidiTrack) -> list[str]:
    return [str(m) for m in track if not m.is_meta or m.type != "end_of_track"]


def test_lane_counts_chord_tones_changes_and_distinct_chords():
    c, g = frozenset({0, 4, 7}), frozenset({7, 11, 2})
    melody = [60, 64, -1, 62, 62, 67, 71, 72]
    chords = [c, c, c, c, g, g, None, c]
    got = lane(melody, chords, bar_frames=4)
    # frames with both: 60 C, 64 C, 62 C (no), 62 G, 67 G, 72 C -> 5 of 6
    assert got.harmony == pytest.approx(5 / 6)
    assert got.changes == 3 and got.distinct == 2 and got.changes_per_bar == pytest.approx(1.5)
    assert lane([-1, -1], [c, c], 4).harmony is None


def test_the_second_opinion_keeps_the_take_and_its_melody_and_adds_the_teachers_chords(take, teacher, tmp_path):
    before = take.read_bytes()
    done = second_opinion(take, teacher, tmp_path / "second.mid", seed=1)
    assert take.read_bytes() == before  # the take is never rewritten
    new, old = mido.MidiFile(done.out), mido.MidiFile(take)
    names = [t.name for t in new.tracks]
    assert names[1:] == ["Melody", TEACHER_TRACK]
    assert messages(new.tracks[1]) == messages({t.name: t for t in old.tracks}["Melody"])  # note for note
    sheet = read_leadsheet(done.out)  # a session like any other: the lead sheet and the chart read it
    assert sheet.bpm == read_leadsheet(take).bpm and sheet.meter == read_leadsheet(take).meter
    assert len({s for _, s in sheet.chords if s}) == done.teacher.distinct
    side = json.loads(sidecar_path(done.out).read_text())
    assert side["second_opinion_of"] == take.name and side["model"]["role"] == "offline_teacher"
    assert side["harmony"] == {"live": done.live.harmony, "teacher": done.teacher.harmony}
    assert 0.0 < done.live.harmony < 1.0 and 0.0 < done.teacher.harmony <= 1.0
    # the same seed gives the same file; the default output goes beside the take
    again = second_opinion(take, teacher, tmp_path / "again.mid", seed=1)
    assert [messages(t) for t in mido.MidiFile(again.out).tracks] == [messages(t) for t in new.tracks]
    assert default_output(take) == take.with_name("ode.teacher.mid")


def test_a_take_longer_than_the_teachers_window_is_comped_to_its_end(teacher, tmp_path):
    """The teacher was trained on 256 frames; a 24-bar melody is comped window by window, every bar."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000), mido.MetaMessage("time_signature")])
    melody = mido.MidiTrack([mido.MetaMessage("track_name", name="Melody")])
    arpeggios = [[60, 64, 67, 64], [65, 69, 72, 69], [67, 71, 74, 71], [60, 64, 67, 72]]  # I IV V I, a bar each
    for i in range(24 * 4):  # quarter notes
        pitch = arpeggios[(i // 4) % 4][i % 4]
        melody += [mido.Message("note_on", note=pitch, velocity=80, time=0),
                   mido.Message("note_off", note=pitch, velocity=0, time=480)]
    chords = mido.MidiTrack([mido.MetaMessage("track_name", name="Chords")])
    mid.tracks += [conductor, melody, chords]
    long_take = tmp_path / "long.mid"
    mid.save(long_take)
    done = second_opinion(long_take, teacher, seed=2)
    assert done.out == tmp_path / "long.teacher.mid"
    bars = read_leadsheet(done.out).bars()
    assert len(bars) == 24 and all(any(bar.sounding()) for bar in bars)  # a chord sounds in every bar
    assert done.live.harmony is None and done.teacher.harmony > 0.6  # no live chords; the teacher's fit the tune


def test_bad_input_is_one_line_and_writes_nothing(take, tmp_path, capsys):
    assert main(["reharmonize", str(tmp_path / "missing.mid")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.mid" in err and "\n" not in err
    before = take.read_bytes()
    assert main(["reharmonize", str(take), "-o", str(take)]) == 2  # over the take itself
    err = capsys.readouterr().err.strip()
    assert "the take itself" in err and take.read_bytes() == before
    assert main(["reharmonize", str(take), "--temperature", "nan", "-o", str(tmp_path / "x.mid")]) == 2
    assert "--temperature nan" in capsys.readouterr().err and not (tmp_path / "x.mid").exists()
    not_a_session = tmp_path / "plain.mid"
    mido.MidiFile(ODE).save(not_a_session)
    assert main(["reharmonize", str(not_a_session)]) == 2
    assert "not a Comper session" in capsys.readouterr().err


def test_the_command_prints_both_versions_and_draws_the_teachers_chart(take, tmp_path, capsys):
    out, chart = tmp_path / "t.mid", tmp_path / "t.png"
    assert main(["reharmonize", str(take), "-o", str(out), "--chart", str(chart), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "the take's chords:" in printed and "the teacher's chords:" in printed and "harmony 0." in printed
    assert out.exists() and sidecar_path(out).exists() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sessions_panel_saves_the_second_opinion_beside_the_take_and_selects_it(qtbot, take, tmp_path):
    import shutil

    from app.gui.background import Background
    from app.gui.sessions import SessionsPanel

    folder = tmp_path / "sessions"
    folder.mkdir()
    shutil.copy(take, folder / take.name)
    shutil.copy(sidecar_path(take), sidecar_path(folder / take.name))
    bg = Background()
    panel = SessionsPanel(bg, lambda: folder)
    qtbot.addWidget(panel)
    panel.refresh()
    qtbot.waitUntil(lambda: panel.names() == ["ode"], timeout=5000)
    before = (folder / "ode.mid").read_bytes()
    with qtbot.waitSignal(panel.message, timeout=300000, check_params_cb=lambda m: m.startswith("saved")) as said:
        panel.second_opinion(panel.sessions[0])
    assert "ode.teacher.mid" in said.args[0] and "the teacher's chords harmony" in said.args[0]
    qtbot.waitUntil(lambda: sorted(panel.names()) == ["ode", "ode.teacher"], timeout=5000)
    assert panel.selected().midi == folder / "ode.teacher.mid"  # Replay now plays the teacher's version
    assert (folder / "ode.mid").read_bytes() == before
    bg.shutdown()
