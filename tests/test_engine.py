"""The live engine's core on a simulated clock: causality, grammar, listen-first, sliding window, voicing."""

import numpy as np
import pytest

from app.engine.bundle import load_bundle
from app.engine.clock import FrameClock
from app.engine.grammar import Grammar
from app.engine.melody import MelodyTrack
from app.engine.planner import Planner, PlanSettings
from app.engine.policy import OnnxPolicy
from app.engine.simulate import simulate
from app.engine.voicing import Voicing, VoicingSettings, voice


@pytest.fixture(scope="module")
def policy(tiny_bundle):
    return OnnxPolicy(load_bundle(tiny_bundle))


def melody_line(n, seed=0):
    rng = np.random.default_rng(seed)
    out, pitch = [], -1
    for f in range(n):
        if f % 4 == 0:
            pitch = int(rng.choice([-1, 60, 62, 64, 65, 67, 69]))
            out.append((pitch, pitch >= 0))
        else:
            out.append((pitch, False))
    return out


@pytest.mark.parametrize("lookahead,commit", [(4, 4), (4, 1), (2, 0)])
def test_changing_the_melody_from_frame_t_never_changes_a_chord_at_or_before_t(policy, lookahead, commit):
    settings = PlanSettings(lookahead_beats=lookahead, commit_beats=commit, listen_beats=2, seed=7)
    a = melody_line(120, seed=1)
    for t in (20, 47, 90):
        b = a[:t] + melody_line(120 - t, seed=99)
        ja = simulate(Planner(policy, settings), a)
        jb = simulate(Planner(policy, settings), b)
        assert ja.chords[:t + 1] == jb.chords[:t + 1]
    assert ja.chords != simulate(Planner(policy, PlanSettings(lookahead_beats=lookahead, commit_beats=commit,
                                                              listen_beats=2, seed=8)), a).chords


def test_played_chords_follow_the_grammar_and_wait_for_the_listen_period(policy):
    settings = PlanSettings(listen_beats=8, seed=3, temperature=1.5)
    jam = simulate(Planner(policy, settings), melody_line(200))
    g = Grammar.from_table(policy.card["tokens"])
    assert all(c == g.silence for c in jam.chords[:32])
    assert any(c != g.silence for c in jam.chords[32:])
    prev = None
    for c in jam.chords:
        assert g.is_valid("chord", prev, c)
        prev = c


def test_committed_chords_never_change(policy):
    planner = Planner(policy, PlanSettings(lookahead_beats=4, commit_beats=2, listen_beats=1, seed=5))
    promised = {}
    for pitch, onset in melody_line(150, seed=4):
        result = planner.advance(pitch, onset)
        for g, c in result.committed.items():
            assert promised.setdefault(g, c) == c
        for g, c in promised.items():
            if g >= planner.next_frame:
                assert planner.chord_for(g) == c
        assert all(g > planner.next_frame + 8 - 1 for g in result.tentative)  # beyond the 2-beat commit


def test_the_window_slides_at_the_context_limit_and_the_cost_stays_flat(policy):
    planner = Planner(policy, PlanSettings(seed=1, listen_beats=1))
    ctx = planner.context_frames
    jam = simulate(planner, melody_line(3 * ctx, seed=2))
    assert len(jam.chords) == 3 * ctx
    assert len(planner.history) < ctx  # the window slid
    calls = [p.model_calls for p in jam.plans]
    early, late = np.mean(calls[50:ctx - 30]), np.mean(calls[-ctx + 30:])
    assert late <= early * 1.5 + 1


def test_a_held_note_reuses_the_imagined_branch_most_of_the_time(policy):
    planner = Planner(policy, PlanSettings(seed=0, listen_beats=1, temperature=0.0))
    jam = simulate(planner, [(-1, False)] * 100)
    assert sum(p.reused for p in jam.plans) > 50


def test_melody_track_quantizes_top_note_and_onsets():
    clock = FrameClock(bpm=120, start=10.0)  # a frame is 0.125 s
    assert clock.nearest_frame(10.0 + 0.06) == 0 and clock.nearest_frame(10.0 + 0.07) == 1
    assert clock.closed_frames(10.0 + 0.06) == 0 and clock.closed_frames(10.0 + 0.07) == 1
    track = MelodyTrack()
    track.note_on(60, 0)
    track.note_on(55, 1)  # a lower note under the melody
    track.note_off(60, 4)
    track.note_on(64, 6)
    track.note_off(64, 6)  # shorter than a frame: lasts one frame
    assert [track.frame(f) for f in range(8)] == [(60, True), (60, False), (60, False), (60, False),
                                                   (55, False), (55, False), (64, True), (55, False)]


def test_voicing_ranges_and_voice_leading():
    s = VoicingSettings()
    c = voice(0, (0, 4, 7), s)
    assert c.bass == 36 and all(s.chord_low <= n <= s.chord_high for n in c.notes)
    assert sorted(n % 12 for n in c.notes) == [0, 4, 7]
    f = voice(5, (0, 5, 9), s, previous=c)
    moved = sum(min(abs(n - p) for p in c.notes) for n in f.notes)
    jumpy = voice(5, (0, 5, 9), VoicingSettings(voice_leading=False), previous=c)
    assert moved <= sum(min(abs(n - p) for p in c.notes) for n in jumpy.notes)
    assert f.bass == 41 and isinstance(f, Voicing)


def test_the_shadow_cache_slide_equals_a_fresh_prefill(policy):
    """The window slides through a cache grown a chunk per frame (``idle``): the real state it leaves must be
    the one a full re-prefill of the same history would give."""
    import copy

    planner = Planner(policy, PlanSettings(seed=3, listen_beats=1, temperature=1.2))
    slides = through_shadow = 0
    for pitch, onset in melody_line(3 * planner.context_frames, seed=5):
        before, had_shadow = len(planner.history), planner.shadow is not None
        planner.advance(pitch, onset)
        if len(planner.history) < before:  # slid during this frame
            slides += 1
            through_shadow += had_shadow
            fresh = copy.copy(planner)
            fresh._prefill()
            assert fresh.state.length == planner.state.length
            np.testing.assert_allclose(fresh.logits, planner.logits, atol=1e-4)
            assert (fresh.state.last_chord, fresh.state.last_note) == (planner.state.last_chord,
                                                                       planner.state.last_note)
        planner.idle()
    assert slides >= 2 and through_shadow == slides  # every slide took the cheap path, and it was exact


# --- planner faults are named, bad options refused -------------------------------------------------------------


@pytest.mark.parametrize("kind,says", [("nan", "the model gave NaN or inf logits"),
                                       ("ort", "onnxruntime failed ([ONNXRuntimeError]")])
def test_a_model_that_fails_mid_plan_is_a_bundle_error_naming_the_file_not_a_numpy_error(policy, kind, says):
    from fault_helpers import break_policy

    from app.engine.bundle import BundleError

    broken = OnnxPolicy(policy.bundle)
    planner = Planner(broken, PlanSettings(seed=1, listen_beats=0))
    for pitch, onset in melody_line(8):
        planner.advance(pitch, onset)
    break_policy(broken, kind).arm()
    with pytest.raises(BundleError) as e:
        planner.advance(60, True)
    assert str(e.value).startswith(f"{policy.bundle.onnx_path}: {says}") and "\n" not in str(e.value)


@pytest.mark.parametrize("command", [["jam", "--in", "virtual", "--midi-api", "JACK", "--seconds", "1"],
                                     ["rejam", "melody.mid", "-o", "out.mid"], ["bench", "--frames", "10"]])
@pytest.mark.parametrize("value", ["nan", "-1", "inf", "3.5"])
def test_an_out_of_range_temperature_is_one_line_before_anything_opens(command, value, tmp_path, monkeypatch,
                                                                       capsys):
    from app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"comper-no-server-{value}")  # a port opened first would fail
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")                         # with another line
    monkeypatch.setenv("COMPER_SESSIONS", str(tmp_path))
    assert main([*command, "--temperature", value]) == 2
    out, err = capsys.readouterr()
    shown = value if value != "-1" else "-1.0"
    assert err == f"comper: error: --temperature {shown}: must be between 0 and 3\n" and out == ""
    assert list(tmp_path.iterdir()) == []
