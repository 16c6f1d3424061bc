"""`comper-train calibrate`: the change-cost offset that gives a policy the songs' harmonic rhythm under the
engine's steering, chosen on the validation split and written into its card."""

import json
import shutil
from pathlib import Path

import pytest

from app.engine.card import Card
from training.calibrate import Trial, choose
from training.cli import main


def trial(offset: float, harmony: float, changes: float) -> Trial:
    return Trial(offset, harmony, 5.0, changes, truth_changes_per_bar=1.2, out_of_key=0.1)


def test_the_offset_nearest_the_songs_rhythm_wins_and_harmony_breaks_a_tie():
    frozen, songlike, flickering = trial(0.0, 0.60, 0.4), trial(-2.0, 0.58, 1.25), trial(-3.0, 0.55, 2.0)
    assert choose([frozen, songlike, flickering]) is songlike  # not the best harmony: that one froze
    level = trial(-1.0, 0.62, 1.15)  # as near the songs' rate (0.96x vs 1.04x), and better harmony
    assert choose([songlike, level]) is level


@pytest.fixture()
def own_bundle(tiny_bundle, tmp_path):
    """A copy of the tiny bundle, so that writing its card leaves the session's fixture alone."""
    for f in tiny_bundle.parent.glob("tiny-test*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "tiny-test.json"


def test_calibrate_runs_the_engine_per_offset_and_writes_the_choice_into_the_card(small_cache, own_bundle, capsys):
    before = json.loads(own_bundle.read_text())
    code = main(["calibrate", "--bundle", str(own_bundle), "--cache", str(small_cache[0].path), "--songs", "2",
                 "--offsets", "-2", "1", "--teacher", "none", "--listen", "4", "--write"])
    out = capsys.readouterr().out
    assert code == 0, out
    trials = [line for line in out.splitlines() if line.startswith("offset")]
    assert len(trials) == 2 and "-2.0" in trials[0] and "+1.0" in trials[1]
    card = Card.load(own_bundle)  # still a valid card, now calibrated
    assert card.steering is not None and card.steering.chosen_on == "valid"
    assert card.change_cost_offset in (-2.0, 1.0)
    assert f"offset {card.change_cost_offset:+g}" in out.splitlines()[-2].replace("change-cost ", "")
    after = json.loads(own_bundle.read_text())  # only the calibration is new
    assert {k: v for k, v in after.items() if k != "steering"} == before


def test_calibrate_refuses_what_it_cannot_calibrate_in_one_line(small_cache, own_bundle, capsys):
    before = own_bundle.read_text()
    base = ["calibrate", "--bundle", str(own_bundle), "--cache", str(small_cache[0].path), "--songs", "1",
            "--teacher", "none", "--write"]
    assert main(base + ["--steer", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--steer off plays the raw policy" in err and "\n" not in err
    assert main(base + ["--offsets", "-6"]) == 2  # the change cost it would play is out of the knob's range
    err = capsys.readouterr().err.strip()
    assert "--offsets -6" in err and "must be between" in err and "\n" not in err
    assert own_bundle.read_text() == before  # nothing written


def test_the_teachers_second_opinion_is_calibrated_on_whole_validation_melodies(small_cache, tmp_path, capsys):
    """An offline-teacher card is calibrated on what it plays: ``comper reharmonize`` of whole melodies."""
    teacher = Path(__file__).resolve().parents[1] / "models" / "offline-teacher.json"
    for f in teacher.parent.glob("offline-teacher.*"):
        shutil.copy(f, tmp_path / f.name)
    card_path = tmp_path / "offline-teacher.json"
    code = main(["calibrate", "--bundle", str(card_path), "--cache", str(small_cache[0].path), "--songs", "1",
                 "--offsets", "-1", "0", "--write"])
    out = capsys.readouterr().out
    assert code == 0, out
    trials = [line for line in out.splitlines() if line.startswith("offset")]
    assert len(trials) == 2 and all("harmony 0." in t or "harmony 1." in t for t in trials)
    card = Card.load(card_path)
    assert card.role == "offline_teacher" and card.steering.chosen_on == "valid"
    assert card.change_cost_offset in (-1.0, 0.0)
