"""`comper-train pipeline`: every stage from the cache to the bundles, on the smoke preset; resumable."""

import json
import time

from app.engine.bundle import load_bundle
from training.pipeline import PRESETS, run_pipeline
from training.rl.ppo import select_snapshot


def test_the_smoke_pipeline_makes_loadable_bundles_and_resumes(small_cache, tmp_path):
    cache = small_cache[0].path
    out = tmp_path / "pipe"
    record = run_pipeline("smoke", data=tmp_path / "unused", out=out, cache=cache)
    cfg = PRESETS["smoke"]
    expected = (["data", "pretrain-online", "pretrain-offline"] + [f"reward-{k}" for k in cfg.reward_kinds]
                + [f"rl-{s}" for s in cfg.systems] + ["export", "calibrate", "eval-test", "eval-ood", "cards"])
    assert list(record["stages"]) == expected
    assert all(s["done"] for s in record["stages"].values())
    roles = {p.stem: load_bundle(p).role for p in (out / "models").glob("*.json")}
    assert roles == {"online-mle": "online_policy", "offline-teacher": "offline_teacher",
                     **{s: "online_policy" for s in cfg.systems}}
    metrics = json.loads((out / "reports" / "test" / "metrics.json").read_text())
    assert {"online-mle", "gapt", "ground truth"} <= set(metrics["protocols"]["fixed"])
    # the cards carry the figures measured on the bundles themselves, for both splits
    card = json.loads((out / "models" / "gapt.json").read_text())
    assert set(card["evaluation"]) == {"test", "ood"} and "fp16 storage" in card["weights"]
    fixed = metrics["protocols"]["fixed"]["gapt"]["harmony"]["mean"]
    assert card["evaluation"]["test"]["harmony"] == fixed and card["description"].startswith("GAPT")
    # each online policy's steering was calibrated on validation songs, and the cards stage kept it
    assert card["steering"]["chosen_on"] == "valid" and card["steering"]["songs"] == cfg.calibration_songs
    assert load_bundle(out / "models" / "gapt.json").card.change_cost_offset == card["steering"]["change_cost_offset"]
    assert json.loads((out / "models" / "online-mle.json").read_text())["steering"]["chosen_on"] == "valid"
    assert "steering" not in json.loads((out / "models" / "offline-teacher.json").read_text())
    assert "| `gapt` |" in (out / "models" / "TABLE.md").read_text()
    # gapt ships the snapshot its validation curve chose; the others their last update
    chosen = select_snapshot(out / "runs" / "rl-gapt")
    assert card["training"]["checkpoint"] == ("ckpt_last.pt" if chosen == "last" else f"ckpt_{chosen}.pt")
    assert json.loads((out / "models" / "realchords.json").read_text())["training"]["checkpoint"] == "ckpt_last.pt"
    # a second run finds every stage done and does nothing
    t0 = time.perf_counter()
    again = run_pipeline("smoke", data=tmp_path / "unused", out=out, cache=cache)
    assert again["stages"] == record["stages"] and time.perf_counter() - t0 < 10
