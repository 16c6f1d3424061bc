"""Settings declared once (app/engine/options.py): every knob of the tables is a command-line flag of the commands
it belongs to, with the table's type, default and range; a value out of range (or a rule between two knobs that
does not hold) is one line naming the flag, the value and the range, exit status 2, before anything opens; a saved
value out of range is clamped with a note. The window's controls are checked against the same table in
tests/test_gui.py."""

from __future__ import annotations

import argparse
import math

import pytest

from app.cli import build_parser, main
from app.engine import options
from app.engine.options import GUI_KNOBS, JAM_KNOBS, PLAN_KNOBS, RULES, RUN_KNOBS, JamSettings, check_args, knob
from app.engine.planner import PlanSettings

# A jam that would open a JACK port first: had the value not been refused before, that would be the error line.
JAM = ["jam", "--in", "virtual", "--midi-api", "JACK"]


def flags(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {option: action for action in sub.choices[command]._actions for option in action.option_strings}


FOLLOWS = {rule.name: None for rule in RULES}  # a flag left out follows its limit: its default is None


@pytest.mark.parametrize("command,knobs,defaults", [
    ("jam", PLAN_KNOBS + JAM_KNOBS + (knob("seconds"), knob("threads")), FOLLOWS),
    ("rejam", PLAN_KNOBS + (knob("bpm"), knob("max_minutes"), knob("max_frames")), FOLLOWS | {"bpm": None}),
    ("bench", PLAN_KNOBS + (knob("bpm"), knob("frames"), knob("threads")),
     FOLLOWS | {"bpm": 120.0, "listen_beats": 0}),
    ("render", (knob("max_minutes"),), {}),
])
def test_every_knob_is_a_flag_with_the_tables_type_default_and_range(command, knobs, defaults):
    given = flags(command)
    for k in knobs:
        action = given[k.option]
        assert action.type is k.kind and action.default == defaults.get(k.name, k.default), k.name
        assert f"between {k.between}" in action.help
        limits = {options.dest(knob(r.limit)): knob(r.limit).hi for r in RULES if r.name == k.name}
        for value in (k.lo, k.hi):
            check_args(argparse.Namespace(**{options.dest(k): value}, **limits))
        below = k.lo - 1 if k.kind is int else math.nextafter(k.lo, -math.inf)
        above = k.hi + 1 if k.kind is int else math.nextafter(k.hi, math.inf)
        for value in (below, above, math.nan):
            with pytest.raises(options.OptionError) as e:
                check_args(argparse.Namespace(**{options.dest(k): value}, **limits))
            assert str(e.value) == f"{k.option} {value}: must be between {k.between}"


def test_the_gui_knobs_are_flags_of_jam_too():
    jam = flags("jam")
    assert GUI_KNOBS and all(k.option in jam for k in GUI_KNOBS)
    assert all(not k.gui for k in RUN_KNOBS)


@pytest.mark.parametrize("argv,line", [
    (JAM + ["--bpm", "0"], "--bpm 0.0: must be between 30 and 300 bpm"),
    (JAM + ["--bpm", "10000"], "--bpm 10000.0: must be between 30 and 300 bpm"),
    (JAM + ["--temperature", "-1"], "--temperature -1.0: must be between 0 and 3"),
    (JAM + ["--lookahead", "0"], "--lookahead 0.0: must be between 0.25 and 16 beats"),
    (JAM + ["--lookahead", "1000"], "--lookahead 1000.0: must be between 0.25 and 16 beats"),
    (JAM + ["--commit", "8"], "--commit 8.0: must be at most --lookahead (4): only chords already planned can be "
                              "promised"),
    (JAM + ["--lookahead", "2", "--commit", "3"], "--commit 3.0: must be at most --lookahead (2.0): only chords "
                                                   "already planned can be promised"),
    (JAM + ["--count-in", "-1"], "--count-in -1: must be between 0 and 4 bar(s)"),
    (JAM + ["--seconds", "0"], "--seconds 0.0: must be between 0.1 and 86400 seconds"),
    (JAM + ["--seed", "-1"], "--seed -1: must be between 0 and 4294967295"),
    (JAM + ["--threads", "0"], "--threads 0: must be between 1 and 64"),
    (["rejam", "melody.mid", "-o", "out.mid", "--commit", "5"], "--commit 5.0: must be at most --lookahead (4)"),
    (["rejam", "melody.mid", "-o", "out.mid", "--bpm", "0"], "--bpm 0.0: must be between 30 and 300 bpm"),
    (["bench", "--frames", "0"], "--frames 0: must be between 1 and 1000000"),
    (["bench", "--bpm", "0"], "--bpm 0.0: must be between 30 and 300 bpm"),
    (["--demo", "--seconds", "0"], "--seconds 0.0: must be between 0.1 and 86400 seconds"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_value_out_of_range_is_one_line_naming_the_flag_before_anything_opens(argv, line, tmp_path, monkeypatch,
                                                                               capsys):
    """Each of these was taken silently (`--bpm 0`, `--temperature -1`, `--lookahead 0`, commit over lookahead,
    `--count-in -1`, `jam --seconds 0`: a jam for ever) or ended in a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "comper-no-server")  # a port opened first would fail with another line
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    monkeypatch.setenv("COMPER_SESSIONS", str(tmp_path))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"comper: error: {line}") and err.count("\n") == 1 and out == ""
    assert list(tmp_path.iterdir()) == []


def test_a_commit_left_out_follows_a_shorter_lookahead_as_it_always_did():
    p = argparse.ArgumentParser()
    options.add_plan_arguments(p)
    options.add_arguments(p, JAM_KNOBS)
    s = JamSettings.from_args(p.parse_args(["--lookahead", "2", "--bpm", "90", "--count-in", "0"]))
    assert (s.plan.lookahead_beats, s.plan.commit_beats, s.bpm, s.count_in_bars) == (2.0, 2.0, 90.0, 0)
    assert JamSettings.from_args(p.parse_args([])) == JamSettings()
    assert options.plan_from_args(p.parse_args([])) == PlanSettings()


def test_a_saved_value_out_of_range_is_clamped_with_a_note():
    jam = options.with_values(JamSettings(), {"bpm": 1000.0, "lookahead_beats": 2.0, "temperature": math.nan})
    fixed, notes = options.clamped(jam)
    assert (fixed.bpm, fixed.plan.lookahead_beats, fixed.plan.commit_beats, fixed.plan.temperature) == (
        300.0, 2.0, 2.0, PlanSettings().temperature)
    assert notes == ["Tempo 1000: must be between 30 and 300 bpm; 300 is used",
                     "Temperature nan: must be between 0 and 3; 1.1 is used",
                     "Commit 4: more than the lookahead (only chords already planned can be promised); 2 is used"]
    assert options.clamped(JamSettings()) == (JamSettings(), [])
