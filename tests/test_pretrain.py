"""MLE pretraining: losses fall, exact resume, a non-finite loss stops cleanly, checkpoints never run code."""

import json
import pickle

import pytest
import torch

from training import pretrain as P
from training.checkpoints import load_checkpoint
from training.cli import main


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_run_writes_checkpoints_curves_and_split_validation_loss(tiny_run):
    for name in ("ckpt_last.pt", "ckpt_best.pt", "config.json", "log.jsonl", "loss.png"):
        assert (tiny_run / name).is_file(), name
    rows = read_log(tiny_run)
    val = [r for r in rows if "val_loss" in r]
    assert val and {"val_chord", "val_melody"} <= set(val[-1])
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 7))
    assert (tiny_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", ["online", "offline", "melody"])
def test_killed_and_resumed_run_continues_the_same_curve(small_cache, tmp_path, kind):
    cache = small_cache[0]
    recipe = P.RECIPES["smoke"]
    straight = tmp_path / "straight"
    P.pretrain(kind, "tiny", cache, straight, recipe, device="cpu", quiet=True)
    resumed = tmp_path / "resumed"
    P.pretrain(kind, "tiny", cache, resumed, recipe, device="cpu", quiet=True, until=3)  # "killed" at step 3
    assert load_checkpoint(resumed / "ckpt_last.pt")["step"] == 3
    with open(resumed / "log.jsonl", "a") as f:  # a row logged after the last checkpoint, lost with the kill
        f.write(json.dumps({"step": 4, "loss": 99.0}) + "\n")
    P.pretrain(kind, "tiny", cache, resumed, recipe, device="cpu", quiet=True)
    a = [(r["step"], round(r["loss"], 5)) for r in read_log(straight) if "loss" in r]
    b = [(r["step"], round(r["loss"], 5)) for r in read_log(resumed) if "loss" in r]
    assert a == b
    wa = load_checkpoint(straight / "ckpt_last.pt")["model"]
    wb = load_checkpoint(resumed / "ckpt_last.pt")["model"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_resume_refuses_a_different_model(small_cache, tiny_run, tmp_path):
    with pytest.raises(ValueError, match="holds a online tiny run"):
        P.pretrain("offline", "tiny", small_cache[0], tiny_run, P.RECIPES["smoke"], device="cpu", quiet=True)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(small_cache, tmp_path, monkeypatch,
                                                                                capsys):
    real = P.token_losses
    calls = {"n": 0}

    def poisoned(kind, model, batch):
        out = real(kind, model, batch)
        calls["n"] += 1
        if model.training and calls["n"] >= 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(P, "token_losses", poisoned)
    code = main(["pretrain", "--model", "online", "--config", "tiny", "--recipe", "smoke", "--cache",
                 str(small_cache[0].path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "ckpt_last.pt" in err
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt_last.pt")
    assert 0 < ckpt["step"] < 6 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


class Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "ckpt_last.pt"
    torch.save({"model": Evil()}, path, pickle_module=pickle)
    with pytest.raises(RuntimeError, match="ckpt_last.pt: not a loadable checkpoint"):
        load_checkpoint(path)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    r = P.Recipe(lr=1e-3, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    lrs = [P.lr_at(s, r) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_data_parallel_run_through_torchrun(small_cache, tmp_path):
    """Two processes (gloo on CPU, NCCL on GPUs): gradients are averaged, rank 0 alone writes the run."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29533", "-m", "training.cli", "pretrain", "--model", "online", "--config", "tiny", "--recipe",
                        "smoke", "--cache", str(small_cache[0].path), "--out", str(out), "--device", "cpu"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_checkpoint(out / "ckpt_last.pt")["step"] == 6
    steps = [row["step"] for row in read_log(out) if "loss" in row]
    assert steps == list(range(1, 7))  # one writer: no duplicated rows
