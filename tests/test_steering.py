"""Decode-time steering: off is exactly the raw engine, each prior does what it says, the key tracker hears keys."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.engine import steering
from app.engine.bundle import load_bundle, resolve_model
from app.engine.card import BundleError, Card, SteeringCalibration
from app.engine.key import Key, KeyTracker, estimate_key
from app.engine.midifile import read_melody
from app.engine.options import add_plan_arguments, plan_from_args
from app.engine.planner import Planner, PlanSettings
from app.engine.policy import OnnxPolicy
from app.engine.simulate import simulate
from app.engine.steering import PRESETS, STEER_OFF, Steerer, SteeringError, SteerSettings
from app.engine.teacher import OnnxTeacher

ROOT = Path(__file__).resolve().parents[1]
ODE = ROOT / "assets" / "melodies" / "ode_to_joy.mid"
GOLDEN = Path(__file__).parent / "data" / "unsteered_chords.json"


@pytest.fixture(scope="module")
def ode():
    return read_melody(ODE)


@pytest.fixture(scope="module")
def gapt():
    return OnnxPolicy(load_bundle(resolve_model("gapt")))


def uncalibrated(policy):
    """The card without its steering calibration: the priors' arithmetic on its own."""
    return replace(policy.card, steering=None)


def _changes(vocab, chords):
    """(frame, chord index) of every frame whose sounding chord differs from the previous frame's."""
    out, prev = [], None
    for f, tok in enumerate(chords):
        info = vocab.chord_info.get(tok)
        c = info.chord if info else None
        if c is not None and c != prev:
            out.append((f, c))
        prev = c
    return out


def test_with_steering_off_the_engine_plays_exactly_the_chords_it_played_before_steering_existed(ode):
    """The golden file was written by the engine before steering was added (same bundles, same seeds)."""
    golden = json.loads(GOLDEN.read_text())
    teacher_bundle = load_bundle(resolve_model("offline-teacher"))
    if teacher_bundle.card["onnx"]["sha256"] != golden["teacher_sha256"]:
        pytest.skip("the shipped teacher changed since the golden chords were recorded")
    teacher = OnnxTeacher(teacher_bundle)
    checked = 0
    for case in golden["cases"]:
        bundle = load_bundle(resolve_model(case["model"]))
        if bundle.card["onnx"]["sha256"] != case["model_sha256"]:
            continue  # a re-shipped model: its raw chords are new
        s = PlanSettings(lookahead_beats=case["lookahead"], commit_beats=case["commit"], listen_beats=case["listen"],
                         temperature=case["temperature"], seed=case["seed"], steer=STEER_OFF)
        intro = teacher.intro_filler(case["seed"], case["temperature"]) if case["listen"] else None
        jam = simulate(Planner(OnnxPolicy(bundle), s, intro=intro), ode.frames)
        assert jam.chords == case["chords"], (case["model"], case["seed"])
        checked += 1
    if not checked:
        pytest.skip("every shipped policy changed since the golden chords were recorded")


@pytest.mark.parametrize("rhythm, grid", [("bar", 16), ("half", 8), ("beat", 4), ("auto", 4)])
def test_chords_change_only_on_the_chosen_grid(ode, gapt, rhythm, grid):
    steer = replace(PRESETS["adventurous"], rhythm=rhythm, change_cost=0.0)
    planner = Planner(gapt, PlanSettings(seed=3, listen_beats=0, steer=steer))
    jam = simulate(planner, ode.frames)
    changes = _changes(planner.vocab, jam.chords)
    assert len(changes) >= 4  # it does change chords
    assert all(f % grid == 0 for f, _ in changes), changes
    onsets = [f for f, tok in enumerate(jam.chords) if planner.vocab.is_onset(tok)]
    assert all(f % grid == 0 for f in onsets)  # no off-grid re-strikes either


def test_raw_policy_changes_off_the_beat_and_the_default_steering_does_not(ode, gapt):
    raw_changes, steered_changes = [], []
    for seed in range(3):  # the RL policies rarely change off the beat: three takes of the tune, each way
        raw = Planner(gapt, PlanSettings(seed=seed, listen_beats=0, steer=STEER_OFF))
        steered = Planner(gapt, PlanSettings(seed=seed, listen_beats=0))
        raw_changes += _changes(raw.vocab, simulate(raw, ode.frames).chords)
        steered_changes += _changes(steered.vocab, simulate(steered, ode.frames).chords)
    assert any(f % 4 for f, _ in raw_changes)
    assert not any(f % 4 for f, _ in steered_changes)
    assert len(steered_changes) >= 3 * len(ode.frames) / 64  # and it does not freeze: a change every 4 bars


def _out_of_key_time(planner, chords, key: Key) -> float:
    scale = key.scale()
    info = [planner.vocab.chord_info.get(t) for t in chords]
    sounding = [i for i in info if i]
    return float(np.mean([any(not scale[pc] for pc in i.pitch_classes) for i in sounding]))


def test_a_fixed_key_keeps_the_chords_in_it(ode, gapt):
    """Ode to Joy in C, steered toward Eb major: the chords follow the key given, not the model's habits."""
    free = Planner(gapt, PlanSettings(seed=1, listen_beats=0, steer=replace(STEER_OFF, rhythm="beat")))
    held = Planner(gapt, PlanSettings(seed=1, listen_beats=0,
                                      steer=replace(STEER_OFF, rhythm="beat", key="Eb", key_strength=8.0)))
    eb = Key.parse("Eb")
    free_out = _out_of_key_time(free, simulate(free, ode.frames).chords, eb)
    held_out = _out_of_key_time(held, simulate(held, ode.frames).chords, eb)
    assert held_out < 0.05 < free_out


def test_the_key_tracker_hears_major_minor_and_a_modulation():
    t = KeyTracker()
    for _ in range(4):
        for p in (60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60):  # C major, tonic weighted
            for _ in range(4):
                t.hear(p)
    assert t.key == Key(0, "major") and t.confidence == 1.0
    for _ in range(12):
        for p in (67, 69, 71, 72, 74, 76, 78, 79, 74, 71, 67):  # then G major, long enough to move the estimate
            for _ in range(4):
                t.hear(p)
    assert t.key == Key(7, "major")
    a_minor = np.repeat([69, 71, 72, 74, 76, 77, 80, 81, 76, 72, 69], 4)
    assert estimate_key(a_minor) == Key(9, "minor")
    assert estimate_key(np.full(8, -1)) is None


def test_one_chromatic_note_does_not_flip_the_key():
    t = KeyTracker()
    for p in np.repeat([60, 64, 67, 65, 62, 71, 72, 67], 4):
        t.hear(int(p))
    before = t.key
    for _ in range(2):
        t.hear(61)  # C#: a passing note
    assert t.key == before


def test_key_names_parse_and_bad_ones_say_what_is_wrong():
    assert Key.parse("F#m") == Key(6, "minor")
    assert Key.parse("Bb") == Key(10, "major")
    assert Key.parse("c# minor") == Key(1, "minor")
    assert Key(3, "major").name == "Eb"
    with pytest.raises(ValueError, match="'H'"):
        Key.parse("H")


def test_steering_flags_override_the_preset_and_bad_values_name_the_setting():
    p = argparse.ArgumentParser()
    add_plan_arguments(p)
    plan = plan_from_args(p.parse_args(["--steer", "safe", "--key", "Am", "--rhythm", "bar"]))
    assert plan.steer == replace(PRESETS["safe"], key="Am", rhythm="bar")
    assert plan_from_args(p.parse_args([])).steer == PRESETS[steering.DEFAULT_PRESET]
    with pytest.raises(SteeringError, match="key_strength"):
        plan_from_args(p.parse_args(["--key-strength", "99"]))
    with pytest.raises(SteeringError, match="key"):
        plan_from_args(p.parse_args(["--key", "Q#"]))


def test_saved_settings_from_another_build_are_clamped_not_trusted():
    odd = SteerSettings(rhythm="every-third-beat", change_cost=40.0, key="Zm", candidates=0)
    c = odd.clamped()
    assert c.rhythm == SteerSettings().rhythm and c.change_cost == 8.0 and c.key == "auto" and c.candidates == 1
    assert steering.compose("off", "bar", "C") == STEER_OFF
    assert steering.compose("safe", "bar", "C").rhythm == "bar"


def test_the_prior_holds_the_chord_off_the_grid_and_prices_a_change_on_it(gapt):
    s = Steerer(uncalibrated(gapt), replace(STEER_OFF, rhythm="auto", change_cost=1.0))
    v = {t["symbol"]: t["id"] for t in gapt.card["tokens"] if t["kind"] == "chord_on"}
    hold_c = next(t["id"] for t in gapt.card["tokens"] if t["kind"] == "chord_hold" and t["symbol"] == "C")
    off_grid = s.prior(5, v["C"], [])
    assert np.isinf(off_grid[v["G"]]) and np.isinf(off_grid[v["C"]]) and off_grid[hold_c] == 0.0
    on_bar, on_beat = s.prior(16, v["C"], []), s.prior(20, v["C"], [])
    assert on_bar[v["G"]] == -1.0 and on_beat[v["G"]] == -2.0  # bar line 1 nat; a weak beat 1 more
    assert on_bar[hold_c] == 0.0 and on_bar[v["C"]] == 0.0  # holding or re-striking is no change


def test_a_negative_change_cost_favours_a_change_over_holding(gapt):
    """For a policy that already changes at the songs' rate, the fit priors freeze it: a negative cost is the
    musician's "eager to change" end of the same knob; off the grid a change stays impossible."""
    s = Steerer(uncalibrated(gapt), replace(STEER_OFF, rhythm="auto", change_cost=-1.5).checked())  # in range
    v = {t["symbol"]: t["id"] for t in gapt.card["tokens"] if t["kind"] == "chord_on"}
    hold_c = next(t["id"] for t in gapt.card["tokens"] if t["kind"] == "chord_hold" and t["symbol"] == "C")
    on_bar, on_beat, off_grid = s.prior(16, v["C"], []), s.prior(20, v["C"], []), s.prior(5, v["C"], [])
    assert on_bar[v["G"]] == 1.5 and on_beat[v["G"]] == 0.5 and on_bar[hold_c] == 0.0
    assert np.isinf(off_grid[v["G"]])
    with pytest.raises(SteeringError, match="change_cost"):
        SteerSettings(change_cost=-5.0).checked()


def test_a_cards_calibration_shifts_the_players_change_cost_and_never_touches_the_raw_policy(gapt):
    """RL policies trained toward a teacher hold chords longer than the model the presets were chosen on; their
    card says by how much, and the engine adds it to whatever cost the player chose."""
    calibrated = replace(gapt.card, steering=SteeringCalibration(-2.0, "valid"))
    assert gapt.card.change_cost_offset == -2.0  # the shipped default model carries its calibration
    assert Card.from_dict(calibrated.to_dict()).change_cost_offset == -2.0  # written and read back
    v = {t["symbol"]: t["id"] for t in gapt.card["tokens"] if t["kind"] == "chord_on"}
    settings = replace(STEER_OFF, rhythm="auto", change_cost=0.5)
    plain, shifted = Steerer(uncalibrated(gapt), settings), Steerer(calibrated, settings)
    assert plain.prior(16, v["C"], [])[v["G"]] == -0.5 and shifted.prior(16, v["C"], [])[v["G"]] == 1.5
    assert np.isinf(shifted.prior(5, v["C"], [])[v["G"]])  # off the grid the chord is still held
    assert Steerer(calibrated, STEER_OFF).prior(16, v["C"], []) is None  # steering off: the raw policy
    with pytest.raises(BundleError, match=r"steering\.change_cost_offset: 20 is not between"):
        Card.from_dict({**gapt.card.to_dict(), "steering": {"change_cost_offset": 20}}, "x.json")
    with pytest.raises(BundleError, match=r"steering\.change_cost_offset: expected a number"):
        Card.from_dict({**gapt.card.to_dict(), "steering": {"change_cost_offset": "low"}}, "x.json")


def test_melody_fit_prefers_chords_that_hold_the_recent_melody(gapt):
    s = Steerer(uncalibrated(gapt), replace(STEER_OFF, melody_fit=2.0))
    v = {t["symbol"]: t["id"] for t in gapt.card["tokens"] if t["kind"] == "chord_on"}
    prior = s.prior(16, None, [64, 64, 67, 67, 60, 60])  # E, G, C: a C major arpeggio
    assert prior[v["C"]] == pytest.approx(2.0)
    assert prior[v["Am"]] == pytest.approx(2.0 * 4 / 6)  # holds C and E, not G
    assert prior[v["Gb"]] == pytest.approx(0.0)  # F#: none of them


def test_plan_search_with_more_candidates_plays_chords_that_fit_better(ode, gapt):
    """Best of K by the fit (key, melody, tune): the mean fit of what is played where a change may happen rises
    with K, and the raw policy is still what proposes the chords."""
    def mean_fit(k):
        planner = Planner(gapt, PlanSettings(seed=5, listen_beats=0,
                                             steer=replace(PRESETS["balanced"], candidates=k)))
        fits = []
        orig = planner._sample_chord

        def spy(logits, state, g, imagined):
            c = orig(logits, state, g, imagined)
            if planner.steer.is_change_point(g):
                recent = [planner.vocab.pitch_of.get(m, -1) for _, m in planner.history[-8:]]
                recent += [planner.vocab.pitch_of.get(m, -1) for m in imagined[-8:]]
                fits.append(planner.steer.fit(recent)[c])
            return c

        planner._sample_chord = spy
        simulate(planner, ode.frames)
        return float(np.mean(fits))

    assert mean_fit(8) > mean_fit(1) + 0.1


def test_a_bad_steering_value_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, capsys):
    from app.cli import main as comper

    out = tmp_path / "take.mid"
    assert comper(["rejam", str(ODE), "-o", str(out), "--key", "Xm", "--listen", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("comper: error: steering key 'Xm'") and "\n" not in err
    assert not out.exists()
