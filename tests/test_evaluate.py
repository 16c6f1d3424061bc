"""`comper-train eval`: reproducible, complete report, every protocol, clear errors for bad input."""

import json
import shutil

import pytest

from training.cli import main
from training.data.cache import DataError
from training.evaluate import evaluate, merge_results


@pytest.fixture(scope="module")
def report(small_cache, tiny_bundle, tiny_run, tiny_melody_agent, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(["eval", "--cache", str(small_cache[0].path), "--split", "test", "--out", str(out), "--seed", "3",
                 "--system", f"bundle={tiny_bundle}", "--system", f"run={tiny_run}",
                 "--system", "key=baseline:online-key", "--melody-agent", str(tiny_melody_agent)])
    assert code == 0
    return out


def test_report_json_and_plots_exist(report):
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["protocols"]) == {"fixed", "tritone", "jam"}
    fixed = metrics["protocols"]["fixed"]
    assert list(fixed) == ["ground truth", "bundle", "run", "key"]
    assert set(metrics["protocols"]["jam"]) == {"bundle", "run"}  # online policies only
    for m in fixed.values():
        assert 0.0 <= m["harmony"]["mean"] <= 1.0 and m["harmony"]["n"] > 0
        assert m["harmony"]["ci95"][0] <= m["harmony"]["mean"] <= m["harmony"]["ci95"][1]
        assert m["vendi"] >= 1.0 and len(m["per_beat"]) == 64
    assert fixed["ground truth"]["onset_interval_emd_x1e3"] == 0.0  # the reference histogram is the truth's own
    assert "beats_to_recover" in metrics["protocols"]["tritone"]["ground truth"]
    text = (report / "report.md").read_text()
    assert "| ground truth |" in text and "beats to recover" in text
    for png in ("harmony_vs_diversity.png", "adaptation.png", "chord_frequency.png", "chord_lengths.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"


def test_the_bundle_and_its_run_play_the_same_chords(report):
    """The bundle is the run exported: same seed, same sampler, same chords up to float noise."""
    fixed = json.loads((report / "metrics.json").read_text())["protocols"]["fixed"]
    assert fixed["bundle"]["harmony"]["mean"] == pytest.approx(fixed["run"]["harmony"]["mean"], abs=0.02)


def test_same_seed_same_numbers_other_seed_other_samples(small_cache, tiny_bundle):
    cache = small_cache[0]
    a = evaluate({"b": str(tiny_bundle)}, cache, "test", seed=1, log=lambda *_: None)
    b = evaluate({"b": str(tiny_bundle)}, cache, "test", seed=1, log=lambda *_: None)
    c = evaluate({"b": str(tiny_bundle)}, cache, "test", seed=2, log=lambda *_: None)
    for key in ("harmony", "vendi", "chord_entropy", "chord_frequency"):
        assert a["protocols"]["fixed"]["b"][key] == b["protocols"]["fixed"]["b"][key]
    assert a["protocols"]["fixed"]["b"]["chord_frequency"] != c["protocols"]["fixed"]["b"]["chord_frequency"]
    truth = lambda r: {k: v for k, v in r["protocols"]["fixed"]["ground truth"].items() if k != "seconds"}
    assert truth(a)["harmony"]["mean"] == truth(c)["harmony"]["mean"]
    assert truth(a)["vendi"] == truth(c)["vendi"] and truth(a)["chord_frequency"] == truth(c)["chord_frequency"]


def test_a_system_added_later_scores_as_in_one_run(small_cache, tiny_bundle):
    quiet = lambda *_: None
    together = evaluate({"b": str(tiny_bundle), "key": "baseline:online-key"}, small_cache[0], "test", seed=1,
                        log=quiet)
    first = evaluate({"key": "baseline:online-key"}, small_cache[0], "test", seed=1, log=quiet)
    merged = merge_results(first, evaluate({"b": str(tiny_bundle)}, small_cache[0], "test", seed=1, log=quiet))
    strip = lambda r: {p: {n: {k: v for k, v in m.items() if k != "seconds"} for n, m in systems.items()}
                       for p, systems in r["protocols"].items()}
    assert strip(merged) == strip(together)
    other_seed = evaluate({"b": str(tiny_bundle)}, small_cache[0], "test", seed=2, log=quiet)
    with pytest.raises(DataError, match="seed 1 vs 2"):
        merge_results(first, other_seed)


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_input_is_one_clear_line(small_cache, tiny_bundle, tmp_path, capsys):
    base = ["eval", "--cache", str(small_cache[0].path), "--out", str(tmp_path / "r")]
    code, err = run_cli(base + ["--system", f"x={tmp_path / 'missing'}"], capsys)
    assert code == 2 and "missing" in err and "\n" not in err
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_bundle.parent.glob("tiny-test*"):
        shutil.copy(f, other / f.name)
    card = json.loads((other / "tiny-test.json").read_text())
    card["tokens"][300]["symbol"] = "Cfoo"  # a bundle built for another vocabulary
    (other / "tiny-test.json").write_text(json.dumps(card))
    code, err = run_cli(base + ["--system", f"x={other / 'tiny-test.json'}"], capsys)
    assert code == 2 and "vocabulary" in err and "\n" not in err
    code, err = run_cli(base + ["--system", "k=baseline:random", "--n", "100000"], capsys)
    assert code == 2 and "larger than the test split" in err and "\n" not in err
    code, err = run_cli(base + ["--system", "k=baseline:nonsense"], capsys)
    assert code == 2 and "unknown baseline" in err


def test_vendi_with_the_contrastive_chord_encoder(small_cache, tiny_rewards, tmp_path):
    contrastive = tiny_rewards[0]
    r = evaluate({"key": "baseline:online-key", "random": "baseline:random"}, small_cache[0], "test",
                 embedding=contrastive, log=lambda *_: None)
    assert "contrastive" in r["diversity_embedding"]
    fixed = r["protocols"]["fixed"]
    n = fixed["ground truth"]["harmony"]["n"]
    assert all(1.0 <= m["vendi"] <= n + 1e-6 for m in fixed.values())
    with pytest.raises(Exception, match="not a contrastive"):
        evaluate({"k": "baseline:random"}, small_cache[0], "test", embedding=tiny_rewards[1], log=lambda *_: None)


def test_cards_take_the_reports_figures(report, tiny_bundle, tmp_path, capsys):
    bundle = tmp_path / "models"
    shutil.copytree(tiny_bundle.parent, bundle)
    card = bundle / tiny_bundle.name
    assert main(["card", "--bundle", str(card), "--report", str(report / "metrics.json"), "--system", "bundle",
                 "--description", "a tiny test policy"]) == 0
    written = json.loads(card.read_text())
    fixed = json.loads((report / "metrics.json").read_text())["protocols"]["fixed"]
    assert written["evaluation"]["test"]["harmony"] == fixed["bundle"]["harmony"]["mean"]
    assert written["evaluation"]["test"]["songs"] > 0 and written["description"] == "a tiny test policy"
    from app.engine.bundle import load_bundle

    load_bundle(card)  # still a valid bundle: the ONNX file and its sha256 are untouched
    assert main(["card", "--table", str(bundle)]) == 0
    assert f"{fixed['bundle']['harmony']['mean']:.3f}" in capsys.readouterr().out
    assert main(["card", "--bundle", str(card), "--report", str(report / "metrics.json"), "--system", "nope"]) == 2
    assert "no system 'nope'" in capsys.readouterr().err


def test_the_live_protocol_plays_bundles_through_the_engine_and_reports_what_is_heard(small_cache, tiny_bundle,
                                                                                      tmp_path):
    out = tmp_path / "live"
    code = main(["eval", "--cache", str(small_cache[0].path), "--split", "test", "--n", "3", "--out", str(out),
                 "--protocol", "live", "--teacher", "none", "--listen", "4", "--rhythm", "bar",
                 "--system", f"b={tiny_bundle}", "--system", "key=baseline:online-key"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["protocols"]) == {"live"} and metrics["live"]["measured_from_frame"] == 16
    live = metrics["protocols"]["live"]
    assert list(live) == ["ground truth", "b", "key"]
    b = live["b"]
    assert b["plan"]["steer"]["rhythm"] == "bar" and "plan" not in live["key"]
    assert b["offbeat_onsets"] == 0.0  # the bar grid: no chord is struck off the beat ...
    assert b["changes_per_bar"] <= 1.0  # ... and it changes at most once a bar
    for m in live.values():
        assert 0.0 <= m["out_of_key"] <= 1.0 and m["mean_chord_beats"] > 0
    text = (out / "report.md").read_text()
    assert "As heard (the live engine)" in text and "changes/bar (x truth)" in text and "listen-first 4 beats" in text


def test_the_live_protocol_is_the_app_engine_song_for_song(small_cache, tiny_bundle):
    """Each song's chords in the report are exactly what the app's planner plays for that melody and seed."""
    from dataclasses import replace

    import numpy as np

    from app.engine.planner import Planner, PlanSettings
    from app.engine.simulate import simulate
    from training.evaluate import LiveProtocol, fixed_songs, run_live, select_songs
    from training.evaluation.systems import load_system

    cache = small_cache[0]
    songs = fixed_songs(cache, select_songs(cache, "test", 2))
    system = load_system("b", str(tiny_bundle))
    plan = PlanSettings(listen_beats=0)
    out = run_live(system, songs, 7, LiveProtocol(plan))
    for i, f in enumerate(songs.frames):
        planner = Planner(system.model.app_policy, replace(plan, seed=7 + i, bar_beats=songs.bar_frames(i) / 4,
                                                           downbeat_frame=songs.downbeat_frame(i)))
        jam = simulate(planner, [(int(p), bool(o)) for p, o in zip(f.melody, f.melody_onset)])
        chords = [planner.vocab.chord_info[t].chord if t in planner.vocab.chord_info else -1 for t in jam.chords]
        assert np.array_equal(out.chords[i], chords)
    shared = run_live(system, songs, 7, LiveProtocol(plan, jobs=2))  # two worker processes: the same chords
    assert all(np.array_equal(a, b) for a, b in zip(shared.chords, out.chords))
