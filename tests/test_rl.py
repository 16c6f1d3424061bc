"""RL post-training with the tiny config: PPO moves the policy, GAPT's reward and schedule, the KL anchor."""

import json

import numpy as np
import pytest
import torch

from training.checkpoints import load_checkpoint, load_model
from training.data import tokens as T
from training.models.rewards import ChordDiscriminator
from training.models.transformer import preset
from training.rl.ppo import (
    CONFIGS,
    RLConfig,
    chord_masks,
    distill_weight,
    entropy_of,
    gae,
    kl_to_teacher,
    masked_logprobs,
    plot_systems,
    schedule_fires,
    select_snapshot,
    teacher_kl_to_policy,
    total_reward,
    train_rl,
    with_system,
)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def gapt_run(small_cache, tiny_run, tiny_teacher, tiny_rewards, tmp_path_factory):
    out = tmp_path_factory.mktemp("rl") / "gapt"
    cfg = with_system(CONFIGS["smoke"], "gapt")
    train_rl(cfg, tiny_run, tiny_teacher, tiny_rewards, small_cache[0], out, system="gapt", quiet=True)
    return out


def test_a_ppo_run_changes_the_policy_and_logs_every_term(gapt_run, tiny_run):
    before, _ = load_model(tiny_run)
    after, ckpt = load_model(gapt_run)
    assert ckpt["stage"] == "rl:gapt" and ckpt["step"] == 3
    diff = max((a - b).abs().max().item() for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    assert diff > 0
    rows = [json.loads(line) for line in (gapt_run / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [0, 1, 2, 3]
    start, rows = rows[0], rows[1:]
    # the MLE policy's point; Vendi also on the contrastive reward model's chord embedding, the evaluation's measure
    # ... with its harmonic rhythm, and the same figures of the songs' own chords to read them against
    figures = {"vendi", "chord_entropy", "vendi_emb", "changes_per_bar", "offbeat"}
    assert set(start) == {"update", "val_harmony"} | {f"{p}_{k}" for p in ("val", "truth") for k in figures}
    assert 1.0 <= start["val_vendi_emb"] <= 4  # 4 validation songs: Vendi lies between 1 and N
    assert 1.0 <= start["truth_vendi_emb"] <= 4 and 0 <= start["truth_offbeat"] <= 1
    terms = {k for k in rows[0] if k.startswith("r_")}
    assert {"r_penalty_invalid", "r_penalty_silence", "r_penalty_early_stop", "r_penalty_repetition",
            "r_adversarial"} <= terms
    assert len(terms) == 5 + 2  # plus one term per reward model
    assert all(r["r_penalty_invalid"] == 0 for r in rows)  # masked rollouts are always grammatical
    for key in ("kl", "entropy", "value_loss", "pg_loss", "d_updates", "seconds", "seconds_generate", "seconds_ppo"):
        assert key in rows[-1]
    assert rows[-1]["d_updates"] >= 1 and "d_accuracy" in rows[0]
    assert "val_harmony" in rows[-1] and "val_vendi" in rows[-1]
    assert (gapt_run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_every_validation_point_keeps_a_policy_snapshot_that_loads_by_name(gapt_run, tmp_path):
    rows = {r["update"]: r for r in map(json.loads, (gapt_run / "log.jsonl").read_text().splitlines())}
    assert sorted(p.name for p in gapt_run.glob("ckpt_u*.pt")) == ["ckpt_u2.pt", "ckpt_u3.pt"]  # eval_every 2, end
    mid, ckpt = load_model(gapt_run, "u2")
    assert ckpt["step"] == 2 and ckpt["file"] == "ckpt_u2.pt" and "critic" not in ckpt
    assert ckpt["val"]["val_harmony"] == rows[2]["val_harmony"]  # the snapshot carries its validation point
    last, _ = load_model(gapt_run, "last")
    end, _ = load_model(gapt_run, "u3")
    assert all(torch.equal(a, b) for a, b in zip(end.state_dict().values(), last.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(mid.state_dict().values(), last.state_dict().values()))
    with pytest.raises(FileNotFoundError, match=r"ckpt_u7\.pt: no such checkpoint .*u2, u3"):
        load_model(gapt_run, "u7")
    with pytest.raises(ValueError, match="expected best, last or u<N>"):
        load_model(gapt_run, "latest")
    from training.export import export_bundle

    card = export_bundle(gapt_run, "gapt-u2", tmp_path, which="u2")["training"]
    assert (card["stage"], card["steps"], card["checkpoint"]) == ("rl:gapt", 2, "ckpt_u2.pt")
    assert card["rl"]["adversarial"] and card["rl"]["entropy"] == 0.01 and card["val"] == ckpt["val"]


def test_the_evaluator_loads_a_snapshot_by_name(gapt_run):
    from training.data.cache import DataError
    from training.evaluation.systems import load_system

    mid, last = load_system("mid", f"{gapt_run}@u2").model, load_system("end", str(gapt_run)).model
    assert any(not torch.equal(a, b) for a, b in zip(mid.state_dict().values(), last.state_dict().values()))
    with pytest.raises(DataError, match=r"--system bad=.*@u7: no ckpt_u7\.pt in "):
        load_system("bad", f"{gapt_run}@u7")


def test_a_snapshot_brought_back_alone_is_evaluated(gapt_run, tmp_path):
    """A GPU run's chosen snapshot, copied back without the rest of its run folder, is still a system."""
    import shutil

    from training.data.cache import DataError
    from training.evaluation.systems import load_system

    alone = tmp_path / "run"
    alone.mkdir()
    shutil.copy(gapt_run / "ckpt_u2.pt", alone / "ckpt_u2.pt")
    got = load_system("alone", f"{alone}@u2").model
    want = load_system("mid", f"{gapt_run}@u2").model
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), want.state_dict().values()))
    with pytest.raises(DataError, match=r"no ckpt_best\.pt or ckpt_last\.pt in .*not a training run"):
        load_system("whole", str(alone))


def test_runs_side_by_side_plot_even_a_short_run(gapt_run, tmp_path):
    plot_systems({"gapt": gapt_run, "again": gapt_run}, tmp_path / "rl.png")
    assert (tmp_path / "rl.png").read_bytes()[:4] == b"\x89PNG"


def test_resumed_rl_run_continues_the_same_curve(small_cache, tiny_run, tiny_teacher, tiny_rewards, tmp_path):
    cfg = with_system(CONFIGS["smoke"], "gapt")
    a, b = tmp_path / "a", tmp_path / "b"
    train_rl(cfg, tiny_run, tiny_teacher, tiny_rewards, small_cache[0], a, system="gapt", quiet=True)
    train_rl(cfg, tiny_run, tiny_teacher, tiny_rewards, small_cache[0], b, system="gapt", quiet=True, until=2)
    train_rl(cfg, tiny_run, tiny_teacher, tiny_rewards, small_cache[0], b, system="gapt", quiet=True)
    rows = lambda p: [(r["update"], round(r["kl"], 6), round(r["pg_loss"], 6))
                      for r in map(json.loads, (p / "log.jsonl").read_text().splitlines()) if "kl" in r]
    assert rows(a) == rows(b)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(load_checkpoint(a / "ckpt_last.pt")["model"].values(),
                                                                load_checkpoint(b / "ckpt_last.pt")["model"].values()))


def test_schedule_fires_exactly_as_specified():
    cfg = RLConfig(d_every=5, d_phase1=200, d_threshold=1.0, d_window=3)
    fired = [k for k in range(1, 201) if schedule_fires(k, [5.0] * 3, cfg)]
    assert fired == [1] + list(range(5, 201, 5))  # warm-up: fixed interval, whatever the rewards
    assert len(fired) == 41
    assert not schedule_fires(201, [0.5, 0.9, 1.0], cfg)  # mean 0.8 <= 1
    assert schedule_fires(202, [0.5, 1.2, 1.4], cfg)  # mean 1.03 > 1
    assert not schedule_fires(203, [3.0, 1.0, 0.9, 0.95], cfg)  # only the last 3 count: mean 0.95
    assert not schedule_fires(204, [2.0, 2.0], cfg)  # fewer than 3 updates of history


def test_adversarial_reward_rises_as_d_is_fooled():
    torch.manual_seed(0)
    d = ChordDiscriminator(preset("tiny"))
    chords = torch.full((4, 34), T.PAD)
    chords[:, 0] = T.BOS
    chords[:, 1:33] = T.CHORD_ON
    rewards = []
    for bias in (-3.0, 0.0, 3.0):  # D more and more convinced that the rollouts are real
        with torch.no_grad():
            d.head.bias.fill_(bias)
            z = d.logits(chords)
        rewards.append(d.adversarial_reward(chords).mean().item())
        p = torch.sigmoid(z)
        assert torch.allclose(d.adversarial_reward(chords), -torch.log(1 - p), atol=1e-5)
    assert rewards[0] < rewards[1] < rewards[2]


def test_kl_is_zero_when_policy_equals_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    chords = torch.tensor([[T.CHORD_ON + 2, T.CHORD_HOLD + 2, T.SILENCE]])
    mask = chord_masks(chords)
    logits = torch.randn(1, 3, T.VOCAB_SIZE)
    logp = masked_logprobs(logits, mask)
    teacher_same = logp.nan_to_num(neginf=-1e9)
    assert kl_to_teacher(logp, teacher_same).abs().max() < 1e-5
    teacher_other = torch.log_softmax(torch.randn(1, 3, T.VOCAB_SIZE), -1)
    assert (kl_to_teacher(logp, teacher_other) > 0).all()
    assert (entropy_of(logp) > 0).all() and (entropy_of(logp) <= np.log(mask.sum(-1).float()) + 1e-4).all()


def test_gae_on_a_hand_made_episode():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    adv = gae(rewards, values, lam=1.0)  # lambda 1, gamma 1: return minus value
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.5]]))
    adv0 = gae(rewards, values, lam=0.0)  # one-step TD errors
    assert torch.allclose(adv0, torch.tensor([[0.0, 0.0, 0.5]]))


def test_systems_set_the_documented_knobs():
    assert with_system(CONFIGS["cpu"], "realchords").entropy == 0 and not with_system(CONFIGS["cpu"], "realchords").adversarial
    assert with_system(CONFIGS["cpu"], "gapt-no-adv").entropy == 0.01
    gapt = with_system(CONFIGS["cpu"], "gapt")
    assert gapt.adversarial and gapt.entropy == 0.01 and gapt.kl_beta == 0.001
    with pytest.raises(ValueError):
        with_system(CONFIGS["cpu"], "ppo-magic")


def test_the_adversarial_weight_scales_only_the_adversarial_term():
    terms = {"rw-contrastive": torch.tensor([0.5, 0.1]), "penalty_silence": torch.tensor([0.0, -0.2]),
             "adversarial": torch.tensor([1.0, 2.0])}
    assert torch.allclose(total_reward(terms, RLConfig()), torch.tensor([1.5, 1.9]))
    assert torch.allclose(total_reward(terms, RLConfig(adv_weight=0.25)), torch.tensor([0.75, 0.4]))
    assert CONFIGS["paper"].adv_weight == 1.0  # the paper's equal weights


def test_command_line_overrides_only_the_knobs_it_names():
    from training.cli import build_parser, rl_config

    base = ["rl", "--config", "cpu", "--init", "i", "--teacher", "t", "--out", "o", "--cache", "c"]
    plain = rl_config(build_parser().parse_args(base + ["--system", "gapt"]))
    assert plain == with_system(CONFIGS["cpu"], "gapt")
    tuned = rl_config(build_parser().parse_args(base + ["--system", "gapt", "--d-lr", "3e-5", "--adv-weight", "1",
                                                        "--d-phase1", "100", "--actor-lr", "5e-5"]))
    assert (tuned.d_lr, tuned.adv_weight, tuned.d_phase1, tuned.actor_lr) == (3e-5, 1.0, 100, 5e-5)
    assert tuned.critic_lr == plain.critic_lr and tuned.entropy == 0.01 and tuned.adversarial
    no_adv = rl_config(build_parser().parse_args(base + ["--system", "gapt-no-adv", "--adversarial"]))
    assert no_adv.adversarial and no_adv.entropy == 0.01


def test_snapshot_selection_keeps_diversity_and_reads_only_validation(tmp_path):
    rows = [{"update": 0, "val_harmony": 0.35, "val_vendi": 14.0}, {"update": 5, "kl": 0.1},
            {"update": 10, "val_harmony": 0.41, "val_vendi": 19.0}, {"update": 20, "val_harmony": 0.44, "val_vendi": 17.0},
            {"update": 30, "val_harmony": 0.47, "val_vendi": 7.0}]  # the best harmony, but collapsed
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for u in (10, 20, 30):
        (tmp_path / f"ckpt_u{u}.pt").write_bytes(b"")
    assert select_snapshot(tmp_path) == "u20"
    assert select_snapshot(tmp_path, min_vendi_ratio=1.3) == "u10"  # 19 >= 18.2; 17 is not
    assert select_snapshot(tmp_path, min_vendi_ratio=2.0) == "last"
    (tmp_path / "ckpt_u20.pt").unlink()  # a snapshot that is gone cannot be chosen
    assert select_snapshot(tmp_path) == "u10"
    # where the run logged the evaluation's embedding Vendi, that one decides
    for r, emb in zip([rows[0], rows[2], rows[3], rows[4]], (10.0, 8.0, 9.5, 9.8)):
        r["val_vendi_emb"] = emb
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ckpt_u20.pt").write_bytes(b"")
    assert select_snapshot(tmp_path) == "u30"  # 9.8 >= 9.0 and the best harmony; u10's 8.0 is out
    (tmp_path / "log.jsonl").write_text(json.dumps(rows[2]) + "\n")
    with pytest.raises(ValueError, match="no update-0 validation row"):
        select_snapshot(tmp_path)



def test_distillation_alone_moves_the_policy_towards_the_teacher_without_a_critic(small_cache, tiny_run, tiny_teacher,
                                                                                    tmp_path):
    cfg = with_system(CONFIGS["smoke"], "distill", updates=4, actor_lr=1e-3)
    train_rl(cfg, tiny_run, tiny_teacher, [], small_cache[0], tmp_path, system="distill", quiet=True)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()][1:]
    assert not any(k.startswith("r_") for k in rows[0])  # no reward models, no penalties, no adversary
    assert "value_loss" not in rows[0] and "pg_loss" not in rows[0]
    assert rows[-1]["distill_loss"] < rows[0]["distill_loss"]  # the divergence it minimises falls


def test_forward_distillation_is_minimised_by_the_teacher_averaged_over_futures():
    """Two equally likely futures: the teacher says "hold" in both, and "change to A" or "change to B". The forward
    KL's best online policy is the average (keeps the changes); the reverse KL's is the geometric mean, which
    shifts mass to the hold that every future agrees on: the freeze seen in a reverse-KL run."""
    futures = torch.log(torch.tensor([[0.5, 0.5, 0.0 + 1e-6], [0.5, 1e-6, 0.5]]))  # [hold, A, B]
    futures = futures - futures.logsumexp(-1, keepdim=True)
    logits = torch.zeros(3, requires_grad=True)
    for divergence in ("forward", "reverse"):
        logits.data.zero_()
        opt = torch.optim.Adam([logits], lr=0.05)
        for _ in range(1500):
            logp = torch.log_softmax(logits, -1).expand(2, 3)
            loss = (teacher_kl_to_policy(logp, futures) if divergence == "forward" else kl_to_teacher(logp, futures))
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
        p = torch.softmax(logits, -1).detach()
        if divergence == "forward":
            assert torch.allclose(p, torch.tensor([0.5, 0.25, 0.25]), atol=0.02)
        else:
            assert p[0] > 0.9  # the hold every future agrees on takes (nearly) all the mass


def test_distillation_weight_follows_its_own_linear_schedule():
    cfg = RLConfig(updates=11, distill=2.0, distill_final=0.25)
    assert distill_weight(0, cfg) == 2.0 and distill_weight(10, cfg) == pytest.approx(0.5)
    assert distill_weight(5, cfg) == pytest.approx(1.25)
    assert distill_weight(3, RLConfig()) == 0.0  # off unless asked for


def test_every_config_field_is_a_command_line_flag():
    from training.cli import build_parser, rl_config

    base = ["rl", "--config", "cpu", "--init", "i", "--teacher", "t", "--out", "o", "--cache", "c"]
    cfg = rl_config(build_parser().parse_args(base + ["--system", "gapt", "--distill", "0.5", "--rhythm", "2",
                                                      "--no-adv-norm", "--distill-divergence", "reverse"]))
    assert (cfg.distill, cfg.rhythm, cfg.adv_norm, cfg.distill_divergence) == (0.5, 2.0, False, "reverse")
    assert cfg.adversarial and cfg.coherence  # the system's and preset's knobs stay


def test_snapshot_selection_reads_diversity_and_rhythm_against_the_songs_own_chords(tmp_path):
    start = {"update": 0, "val_harmony": 0.35, "val_vendi_emb": 8.0, "val_vendi": 14.0, "val_changes_per_bar": 1.0,
             "truth_vendi_emb": 4.0, "truth_vendi": 14.0, "truth_changes_per_bar": 1.2}
    rows = [start,
            {"update": 10, "val_harmony": 0.40, "val_vendi_emb": 4.0, "val_vendi": 13, "val_changes_per_bar": 1.1},
            {"update": 20, "val_harmony": 0.45, "val_vendi_emb": 3.3, "val_vendi": 13, "val_changes_per_bar": 1.2},
            {"update": 30, "val_harmony": 0.47, "val_vendi_emb": 5.0, "val_vendi": 13, "val_changes_per_bar": 2.0}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for u in (10, 20, 30):
        (tmp_path / f"ckpt_u{u}.pt").write_bytes(b"")
    # u30 flickers (2.0 changes a bar against 1.2); u20 keeps 82% of the songs' Vendi; u10 keeps it all, and
    # would have been refused against the MLE point's 8.0
    assert select_snapshot(tmp_path) == "u10"
    assert select_snapshot(tmp_path, min_vendi_ratio=0.8) == "u20"
    assert select_snapshot(tmp_path, min_vendi_ratio=0.8, rhythm_tolerance=1.0) == "u30"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_device_this_machine_lacks_is_one_line_before_anything_loads(capsys, tmp_path):
    from training.cli import main as train_main

    args = ["--init", str(tmp_path / "none"), "--teacher", str(tmp_path / "none"), "--cache", str(tmp_path / "none"),
            "--out", str(tmp_path / "run")]
    assert train_main(["rl", "--device", "cuda", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("comper-train: error: --device cuda: no CUDA device") and "\n" not in err
    assert train_main(["rl", "--device", "tpu", *args]) == 2
    assert "--device tpu: not a device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written
