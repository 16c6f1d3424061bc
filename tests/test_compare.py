"""Same take, other model (`comper compare`, "Compare with…"): the take's melody re-jammed by another model, note
for note as played (triplets stay triplets), saved beside the take with both versions' figures; the replay view's
two chord lanes. Uses the shipped models (gapt, realchords), which re-jam a short melody in a second."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import mido  # noqa: E402
import pytest  # noqa: E402
from test_rejam import melody_midi, played  # noqa: E402

from app.cli import main  # noqa: E402
from app.compare import compare, default_output, figures, replay_lanes, source_of, version_title  # noqa: E402
from app.recording.output import sidecar_path  # noqa: E402

THIRD = 32  # an eighth-note triplet at 96 ticks a beat
TRIPLETS = [(k * THIRD, k * THIRD + 30, [60, 64, 67, 65, 62][k % 5], 40 + k) for k in range(48)]  # 16 beats


def melody_messages(path: Path) -> list[str]:
    track = {t.name: t for t in mido.MidiFile(path).tracks}["Melody"]
    return [str(m) for m in track if m.type != "end_of_track"]


@pytest.fixture(scope="module")
def take(tmp_path_factory) -> Path:
    """A take of a triplet melody: the shipped gapt re-jams it (a session like a live one)."""
    folder = tmp_path_factory.mktemp("takes")
    tune = melody_midi(folder / "tune.mid", TRIPLETS)
    out = folder / "take.mid"
    assert main(["rejam", str(tune), "-o", str(out), "--model", "gapt", "--listen", "2", "--seed", "5"]) == 0
    tune.unlink()
    return out


def test_a_rejam_of_a_saved_take_with_another_model_keeps_the_melody_note_for_note(take, tmp_path):
    scale = mido.MidiFile(take).ticks_per_beat / 96
    melody = played({t.name: t for t in mido.MidiFile(take).tracks}["Melody"])
    assert [(on, off, p, v) for on, off, p, v in melody] == [
        (round(on * scale), round(off * scale), p, v) for on, off, p, v in TRIPLETS]  # triplets, not 16ths
    other = tmp_path / "other.mid"
    assert main(["rejam", str(take), "-o", str(other), "--model", "realchords", "--listen", "2", "--seed", "5"]) == 0
    assert melody_messages(other) == melody_messages(take)
    assert json.loads(sidecar_path(other).read_text())["model"]["name"] == "realchords"


def test_compare_saves_beside_the_take_and_prints_both_versions(take, capsys):
    before = take.read_bytes()
    assert main(["compare", str(take), "--model", "realchords", "--steer", "safe"]) == 0
    out = default_output(take, "realchords", "safe")
    assert out == take.with_name("take.vs-realchords-safe.mid") and out.exists()
    assert take.read_bytes() == before  # never over the take
    assert melody_messages(out) == melody_messages(take)  # the same melody, as played
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("the take (gapt (balanced)):") and "harmony 0." in printed[0]
    assert printed[1].startswith("realchords (safe):") and "changes a bar" in printed[1]
    side = json.loads(sidecar_path(out).read_text())
    assert side["comparison_of"]["file"] == "take.mid" and side["steering_preset"] == "safe"
    assert side["seed"] == 5  # the take's seed: only the model and the steering differ
    assert side["settings"]["plan"]["steer"]["candidates"] == 8  # the safe preset
    take_lane, other_lane = figures([take, out])
    assert side["figures"]["take"]["harmony"] == take_lane.harmony
    assert side["figures"]["comparison"]["distinct_chords"] == other_lane.distinct
    assert f"{other_lane.distinct} distinct chords" in printed[1]
    assert source_of(out) == take and source_of(take) is None
    assert version_title(out) == "realchords (safe)"
    again = compare(out, "realchords", "off")  # a comparison stands for its take: the versions stay one family
    assert again.take == take and again.out == take.with_name("take.vs-realchords-off.mid")
    assert source_of(again.out) == take and version_title(again.out) == "realchords (off)"


def test_compare_refuses_the_take_itself_and_a_file_that_is_no_session(take, tmp_path, capsys):
    before = take.read_bytes()
    assert main(["compare", str(take), "--model", "realchords", "-o", str(take)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("comper: error: ") and "\n" not in err and "input file" in err
    assert take.read_bytes() == before
    plain = melody_midi(tmp_path / "plain.mid", TRIPLETS[:4])
    assert main(["compare", str(plain), "--model", "realchords"]) == 2
    assert "not a Comper session" in capsys.readouterr().err
    assert main(["compare", str(take), "--model", "no-such-model", "-o", str(tmp_path / "x.mid")]) == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err and not (tmp_path / "x.mid").exists()


def test_the_replay_of_a_comparison_shows_both_chord_lanes_with_their_figures(take, qapp):
    from app.gui.replay import load_replay
    from app.gui.waterfall import WaterfallView, lane_caption

    assert main(["compare", str(take), "--model", "realchords"]) == 0
    out = default_output(take, "realchords")
    lanes = replay_lanes(out)
    take_lane, other_lane = figures([take, out])
    assert [(lane.title, lane.figures, lane.playing) for lane in lanes] == [
        ("take: gapt (balanced)", take_lane, False), ("realchords (balanced)", other_lane, True)]
    assert all(lane.blocks for lane in lanes) and lanes[0].blocks != lanes[1].blocks
    assert lane_caption(lanes[1])[1] == f"harmony {other_lane.harmony:.3f}"
    assert lane_caption(lanes[1])[2] == f"{other_lane.changes_per_bar:.2f}/bar · {other_lane.distinct} chords"
    assert load_replay(take, lanes=True).lanes == []  # a take alone: the waterfall's own chords only
    replay = load_replay(out, lanes=True)
    assert replay.lanes == lanes
    from dataclasses import replace

    from app.gui.view_model import ViewState

    view = WaterfallView()
    view.resize(900, 500)
    state = ViewState(40.0, replay.bpm, replay.meter, 0, replay.chords, replay.notes, title="replay: x",
                      lanes=tuple(replay.lanes))
    view.show_state(replace(state, lanes=()), [], (), None)
    plain = view.grab().toImage()
    view.show_state(state, [], (), None)
    assert view.grab().toImage() != plain  # the lanes are drawn
