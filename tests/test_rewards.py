"""Reward models: rhythm tokens, embeddings, losses, negatives, D's reward, metrics, training runs, resume, loading."""

import argparse
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training import rewards as R
from training.checkpoints import load_checkpoint
from training.data import tokens as T
from training.data.dataset import WindowConfig, WindowDataset
from training.models import rewards as M
from training.models.transformer import preset

TINY = preset("tiny")
ON, HOLD = T.NOTE_ON, T.NOTE_HOLD
C_ON, C_HOLD = T.CHORD_ON, T.CHORD_HOLD


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a 2-core machine with other work running, two threads oversubscribe (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def real_windows(cache, n=8, split="train"):
    ds = WindowDataset(cache, split, config=WindowConfig(order="separate"), augment=False)
    idx = np.linspace(0, len(ds) - 1, n).astype(int)
    wins = [ds.window(int(i), None) for i in idx]
    return (torch.from_numpy(np.stack([w["melody"] for w in wins])),
            torch.from_numpy(np.stack([w["chords"] for w in wins])))


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------------
# Tokens and pair inputs


def test_rhythm_only_maps_onsets_holds_silence_and_keeps_the_specials():
    toks = torch.tensor([T.BOS, ON + 60, HOLD + 60, T.SILENCE, C_ON + 5, C_HOLD + 5, C_HOLD + 5, ON + 127, HOLD,
                         T.EOS, T.PAD])
    want = [M.R_BOS, M.R_ONSET, M.R_HOLD, M.R_SILENCE, M.R_ONSET, M.R_HOLD, M.R_HOLD, M.R_ONSET, M.R_HOLD, M.R_EOS,
            M.R_PAD]
    assert M.rhythm_only(toks).tolist() == want
    assert M.rhythm_only(toks.numpy()).tolist() == want
    assert (M.R_PAD, M.R_BOS, M.R_EOS, M.R_SILENCE) == (T.PAD, T.BOS, T.EOS, T.SILENCE)
    every = M.rhythm_only(torch.arange(T.VOCAB_SIZE))
    assert int(every.max()) == M.RHYTHM_VOCAB - 1 and (every == M.R_ONSET).sum() == T.VOCAB_SIZE // 2 - 2


def test_pair_tokens_cut_both_parts_to_the_joint_length_and_separate_them_with_bos():
    mel = torch.tensor([[T.BOS, ON + 60, HOLD + 60, HOLD + 60, ON + 62, T.EOS, T.PAD, T.PAD]])  # 4 frames, song end
    ch = torch.tensor([[T.BOS, C_ON + 1, C_HOLD + 1, T.PAD, T.PAD, T.PAD, T.PAD, T.PAD]])  # 2 frames
    got = M.pair_tokens(mel, ch)[0].tolist()
    assert got == [T.BOS, ON + 60, HOLD + 60, T.EOS, 0, 0, 0, 0,
                   T.BOS, C_ON + 1, C_HOLD + 1, T.EOS, 0, 0, 0, 0]
    assert M.frame_count(mel).tolist() == [4] and M.frame_count(ch).tolist() == [2]


def test_padding_and_song_ends_cannot_tell_a_shuffled_pair_from_a_real_one(small_cache):
    torch.manual_seed(0)
    model = M.DiscriminativeReward(TINY).eval()
    mel, ch = real_windows(small_cache[0], 2)
    short = ch.clone()
    short[:, 101:] = T.PAD  # chords end after 100 frames: only the first 100 melody frames may count
    long_mel = mel.clone()
    long_mel[:, 101:] = ON + 70  # anything past the joint length
    long_mel[:, -1] = T.EOS
    with torch.no_grad():
        a, b = model.logits(mel, short), model.logits(long_mel, short)
        c = model.logits(mel, ch)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-5)  # the masked part does matter when it is inside the joint length


# ---------------------------------------------------------------------------------------------------------------
# Contrastive


@pytest.mark.parametrize("rhythm", [False, True])
def test_contrastive_embeddings_are_unit_vectors_and_score_is_their_cosine(small_cache, rhythm):
    torch.manual_seed(0)
    model = M.ContrastiveReward(TINY, rhythm=rhythm).eval()
    assert model.cfg.vocab_size == (M.RHYTHM_VOCAB if rhythm else T.VOCAB_SIZE)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    mel, ch = real_windows(small_cache[0], 5)
    with torch.no_grad():
        em, ec, s = model.embed_melody(mel), model.embed_chords(ch), model.score(mel, ch)
    assert em.shape == ec.shape == (5, TINY.d_model) and s.shape == (5,)
    assert torch.allclose(em.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(ec.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(s, (em * ec).sum(-1), atol=1e-6) and (s.abs() <= 1 + 1e-6).all()
    assert not torch.allclose(em, em[:1].expand_as(em), atol=1e-4)  # different windows, different embeddings


def test_info_nce_of_an_aligned_batch_is_lower_than_of_a_misaligned_one():
    e = torch.eye(6, 16)  # orthonormal rows
    scale = torch.tensor(math.log(10.0))
    aligned = M.info_nce(e, e, scale)
    misaligned = M.info_nce(e, e.roll(1, dims=0), scale)
    assert aligned.item() == pytest.approx(math.log(1 + 5 * math.exp(-10)), rel=1e-3)  # known answer
    assert misaligned.item() == pytest.approx(math.log(math.exp(10) + 5), rel=1e-4)
    assert aligned < misaligned
    random = F.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert aligned < M.info_nce(random, random.roll(1, dims=0), scale)


# ---------------------------------------------------------------------------------------------------------------
# Discriminative


def test_derangement_never_keeps_an_item_in_place():
    for n in range(2, 25):
        for seed in range(20):
            p = M.derangement(n, torch.Generator().manual_seed(seed))
            assert sorted(p.tolist()) == list(range(n))
            assert (p != torch.arange(n)).all()
    with pytest.raises(ValueError):
        M.derangement(1)


def test_discriminative_negatives_never_keep_a_matched_pair(small_cache):
    torch.manual_seed(0)
    model = M.DiscriminativeReward(TINY)
    mel, ch = real_windows(small_cache[0], 8)
    assert len({tuple(m.tolist()) for m in mel}) == 8  # distinct melodies, so a kept pair would show
    seen = {}
    real_logits = model.logits

    def spy(m, c):
        seen["mel"], seen["ch"] = m, c
        return real_logits(m, c)

    model.logits = spy
    for seed in range(10):
        loss = model.loss(mel, ch, generator=torch.Generator().manual_seed(seed))
        assert loss.ndim == 0 and torch.isfinite(loss)
        m, c = seen["mel"], seen["ch"]
        assert len(m) == 16 and torch.equal(m[:8], mel) and torch.equal(c[:8], ch) and torch.equal(c[8:], ch)
        for i in range(8):
            assert not torch.equal(m[8 + i], mel[i])
            assert any(torch.equal(m[8 + i], mel[j]) for j in range(8))


@pytest.mark.parametrize("rhythm", [False, True])
def test_discriminative_score_is_a_probability_per_pair(small_cache, rhythm):
    torch.manual_seed(0)
    model = M.DiscriminativeReward(TINY, rhythm=rhythm).eval()
    mel, ch = real_windows(small_cache[0], 3)
    with torch.no_grad():
        s = model.score(mel, ch)
    assert s.shape == (3,) and ((s > 0) & (s < 1)).all()


# ---------------------------------------------------------------------------------------------------------------
# GAPT's chord discriminator


def test_adversarial_reward_rises_with_the_logit_and_equals_minus_log_one_minus_d(small_cache):
    torch.manual_seed(0)
    d = M.ChordDiscriminator(TINY).eval()
    _, ch = real_windows(small_cache[0], 2)
    torch.nn.init.zeros_(d.head.weight)
    rewards = []
    for b in (-30.0, -5.0, -1.0, 0.0, 0.5, 3.0, 12.0, 60.0):
        torch.nn.init.constant_(d.head.bias, b)
        with torch.no_grad():
            r, p = d.adversarial_reward(ch), torch.sigmoid(d.logits(ch).double())  # D, in float64 for the check
        assert r.shape == (2,) and torch.isfinite(r).all()
        if abs(b) <= 12:
            assert torch.allclose(r.double(), -torch.log(1 - p), rtol=1e-5, atol=1e-12)
        rewards.append(float(r[0]))
    assert all(a < b for a, b in zip(rewards, rewards[1:]))
    assert rewards[-1] == pytest.approx(60.0)  # no log(0): the softplus form stays exact where 1 - D rounds to 0
    assert rewards[3] == pytest.approx(math.log(2))  # D = 0.5


def test_chord_discriminator_loss_is_two_way_cross_entropy_with_label_smoothing(small_cache):
    torch.manual_seed(0)
    d = M.ChordDiscriminator(TINY)
    _, ch = real_windows(small_cache[0], 6)
    real, fake = ch[:3], ch[3:]
    loss = d.loss(real, fake, smoothing=0.1)
    z = d.logits(torch.cat([real, fake]))
    two_way = torch.stack([torch.zeros_like(z), z], dim=1)  # softmax([0, z])[1] = sigmoid(z)
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    assert loss.item() == pytest.approx(F.cross_entropy(two_way, labels, label_smoothing=0.1).item(), rel=1e-5)
    assert loss.item() != pytest.approx(F.cross_entropy(two_way, labels).item(), rel=1e-3)
    with pytest.raises(ValueError):
        M.ChordDiscriminator(TINY, rhythm=True)


# ---------------------------------------------------------------------------------------------------------------
# Learning


@pytest.mark.parametrize("kind", ["contrastive", "discriminative", "rhythm_discriminative", "chord_discriminator"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(small_cache, kind):
    torch.manual_seed(0)
    mel, ch = real_windows(small_cache[0], 8)
    if kind == "chord_discriminator":
        model = M.ChordDiscriminator(TINY)
        fake = ch.clone()
        fake[:, 2:][fake[:, 2:] >= T.SILENCE] = C_HOLD + 3  # one chord held throughout: a "collapsed" policy

        def loss_fn():
            return model.loss(ch, fake)
    elif kind == "contrastive":
        model = M.ContrastiveReward(TINY)

        def loss_fn():
            return model.loss(mel, ch)
    else:
        model = M.DiscriminativeReward(TINY, rhythm=kind.startswith("rhythm"))

        def loss_fn():
            return model.loss(mel, ch, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    if kind in ("discriminative", "chord_discriminator"):  # better than chance (D's floor is H(0.95) = 0.199)
        assert np.mean(losses[-3:]) < math.log(2) - 0.1, losses


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def test_retrieval_metrics_on_a_hand_made_similarity_matrix():
    sim = torch.tensor([[0.9, 0.1, 0.2, 0.3],   # right answer first: rank 0
                        [0.8, 0.5, 0.1, 0.0],   # one above: rank 1
                        [0.1, 0.2, 0.3, 0.9],   # one above: rank 1
                        [0.0, 0.0, 0.0, 0.0]])  # all tied: ties count against the query, rank 3
    m = R.retrieval_metrics(sim, ks=(1, 2, 3, 4), map_k=2)
    assert m == pytest.approx({"recall@1": 0.25, "recall@2": 0.75, "recall@3": 0.75, "recall@4": 1.0,
                               "map@2": (1 + 0.5 + 0.5 + 0) / 4})
    assert R.retrieval_metrics(sim)["map@10"] == pytest.approx((1 + 0.5 + 0.5 + 0.25) / 4)
    t = R.retrieval_metrics(sim.T, ks=(1,))  # the other direction: columns become queries
    assert t["recall@1"] == pytest.approx(0.75)  # columns 0-2 rank their own row first; column 3 is tied last
    assert R.retrieval_metrics(torch.eye(12))["recall@1"] == 1.0
    assert R.retrieval_metrics(torch.ones(12, 12))["recall@10"] == 0.0


def test_precision_recall_f1_on_hand_made_scores():
    scores = torch.tensor([0.9, 0.6, 0.4, 0.2, 0.7, 0.1, 0.5])
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0])
    m = R.binary_prf(scores, labels)  # predicted real: 0.9, 0.6, 0.7, 0.5 -> TP 2, FP 2, FN 1
    assert m == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3),
                               "accuracy": 4 / 7})
    none = R.binary_prf(torch.zeros(4), torch.tensor([1, 0, 1, 0]))
    assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1"] == 0.0
    assert R.binary_prf(labels.float(), labels)["f1"] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Training runs


@pytest.fixture(scope="module")
def smoke_runs(small_cache, tmp_path_factory):
    """A contrastive and a rhythm-only discriminative smoke run (tiny config, 6 steps)."""
    base = tmp_path_factory.mktemp("rewards")
    runs = {"contrastive": base / "contrastive-tiny", "discriminative": base / "rhythm-discriminative-tiny"}
    for kind, out in runs.items():
        R.train_reward(kind, "tiny", small_cache[0], out, R.recipe_for(kind, "smoke"),
                       rhythm=kind == "discriminative", device="cpu", quiet=True)
    return runs


CONTRASTIVE_KEYS = {f"{d}_{m}" for d in ("m2c", "c2m") for m in ("recall@1", "recall@5", "recall@10", "map@10")}
DISCRIMINATIVE_KEYS = {"precision", "recall", "f1", "accuracy"}


@pytest.mark.parametrize("kind", ["contrastive", "discriminative"])
def test_a_smoke_run_writes_checkpoints_curves_and_test_metrics(smoke_runs, kind):
    run = smoke_runs[kind]
    for name in ("ckpt_last.pt", "ckpt_best.pt", "config.json", "log.jsonl", "loss.png", "metrics.json"):
        assert (run / name).is_file(), name
    rows = read_log(run)
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 7))
    keys = CONTRASTIVE_KEYS if kind == "contrastive" else DISCRIMINATIVE_KEYS
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val] == [3, 6] and {f"val_{k}" for k in keys} <= set(val[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert keys | {"loss", "pool_size", "step"} <= set(metrics) and metrics["split"] == "test"
    assert 2 <= metrics["pool_size"] <= R.recipe_for(kind, "smoke").eval_pool
    assert all(0.0 <= metrics[k] <= 1.0 for k in keys)
    for name in ("ckpt_best.pt", "ckpt_last.pt"):
        ckpt = load_checkpoint(run / name)
        assert ckpt["kind"] == kind and ckpt["test"] == metrics
    last = load_checkpoint(run / "ckpt_last.pt")
    assert last["step"] == 6
    if kind == "discriminative":  # the rhythm variant: 6 tokens, no transposition
        assert last["rhythm"] and last["model_config"]["vocab_size"] == M.RHYTHM_VOCAB
        assert last["window"]["transpose_low"] == last["window"]["transpose_high"] == 0
    else:
        assert not last["rhythm"] and last["window"]["transpose_low"] == -6
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", ["contrastive", "discriminative"])
def test_killed_and_resumed_run_continues_the_same_curve(small_cache, smoke_runs, tmp_path, kind):
    straight, rhythm = smoke_runs[kind], kind == "discriminative"
    recipe = R.recipe_for(kind, "smoke")
    resumed = tmp_path / "resumed"
    R.train_reward(kind, "tiny", small_cache[0], resumed, recipe, rhythm=rhythm, device="cpu", quiet=True, until=3)
    assert load_checkpoint(resumed / "ckpt_last.pt")["step"] == 3 and not (resumed / "metrics.json").exists()
    with open(resumed / "log.jsonl", "a") as f:  # a row logged after the last checkpoint, lost with the kill
        f.write(json.dumps({"step": 4, "loss": 99.0}) + "\n")
    R.train_reward(kind, "tiny", small_cache[0], resumed, recipe, rhythm=rhythm, device="cpu", quiet=True)
    a = [(r["step"], round(r["loss"], 5)) for r in read_log(straight) if "loss" in r]
    b = [(r["step"], round(r["loss"], 5)) for r in read_log(resumed) if "loss" in r]
    assert a == b
    wa = load_checkpoint(straight / "ckpt_last.pt")["model"]
    wb = load_checkpoint(resumed / "ckpt_last.pt")["model"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (straight, resumed))
    assert ma.keys() == mb.keys() and all(ma[k] == pytest.approx(mb[k], abs=1e-6) if isinstance(ma[k], float)
                                          else ma[k] == mb[k] for k in ma)


def test_resume_refuses_a_different_reward_model(small_cache, smoke_runs):
    with pytest.raises(ValueError, match="holds a contrastive tiny run"):
        R.train_reward("discriminative", "tiny", small_cache[0], smoke_runs["contrastive"],
                       R.recipe_for("discriminative", "smoke"), device="cpu", quiet=True)
    with pytest.raises(ValueError, match="holds a rhythm-only discriminative tiny run"):
        R.train_reward("discriminative", "tiny", small_cache[0], smoke_runs["discriminative"],
                       R.recipe_for("discriminative", "smoke"), device="cpu", quiet=True)


def test_load_reward_and_the_ensemble(small_cache, smoke_runs, tmp_path):
    mel, ch = real_windows(small_cache[0], 4, split="test")
    c_model, c_meta = M.load_reward(smoke_runs["contrastive"])
    d_model, d_meta = M.load_reward(smoke_runs["discriminative"] / "ckpt_last.pt")
    assert isinstance(c_model, M.ContrastiveReward) and not c_model.training and "model" not in c_meta
    assert isinstance(d_model, M.DiscriminativeReward) and d_model.rhythm and d_meta["step"] == 6
    ens = M.RewardEnsemble([smoke_runs["contrastive"], smoke_runs["discriminative"]], which="last")
    scores = ens.score(mel, ch)
    assert list(scores) == ["contrastive-tiny", "rhythm-discriminative-tiny"]
    with torch.no_grad():
        direct = d_model.score(mel, ch)
    assert torch.allclose(scores["rhythm-discriminative-tiny"], direct, atol=1e-6)
    assert all(v.shape == (4,) for v in scores.values())
    assert torch.allclose(ens.total(mel, ch), scores["contrastive-tiny"] + scores["rhythm-discriminative-tiny"])
    ens.train()
    assert not any(m.training for m in ens.modules())
    torch.save({"kind": "online", "model": {}}, tmp_path / "ckpt_best.pt")
    with pytest.raises(ValueError, match="not a reward model"):
        M.load_reward(tmp_path)
    with pytest.raises(ValueError, match="scored separately"):
        M.RewardEnsemble({"d": M.ChordDiscriminator(TINY)})


def test_command_line_trains_a_reward_model(small_cache, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    R.add_rewards_parser(parser.add_subparsers(dest="stage", required=True))
    out = tmp_path / "cli-run"
    args = parser.parse_args(["rewards", "--kind", "contrastive", "--rhythm", "--config", "tiny", "--recipe", "smoke",
                              "--seed", "42", "--steps", "2", "--pool", "8", "--cache", str(small_cache[0].path),
                              "--out", str(out), "--device", "cpu"])
    args.func(args)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["test"]["pool_size"] == 8 and printed["step"] == 2
    ckpt = load_checkpoint(out / "ckpt_last.pt")
    assert ckpt["recipe"]["seed"] == 42 and ckpt["recipe"]["max_steps"] == 2 and ckpt["rhythm"]


def test_paper_recipes_follow_the_papers():
    c, d = R.recipe_for("contrastive", "paper"), R.recipe_for("discriminative", "paper")
    assert (c.batch_size, c.max_steps, c.lr) == (196, 8000, 1e-4)
    assert (d.batch_size, d.max_steps, d.lr) == (64, 3000, 1e-4)  # 64 real + 64 shuffled = 128
    assert R.recipe_for("contrastive", "paper", rhythm=True).max_steps == 2500
    assert R.recipe_for("discriminative", "paper", rhythm=True).batch_size == 32
    assert R.window_config(True).transpose_low == R.window_config(True).transpose_high == 0


def test_a_kept_reward_model_is_bf16_with_a_card_and_scores_like_its_run(tiny_rewards, tmp_path, capsys):
    """`comper-train keep`: the file a new machine starts from loads where the run folder did, within bf16."""
    import hashlib
    import json

    import torch

    from training.cli import main as train_main
    from training.models.rewards import load_reward

    run = tiny_rewards[0]
    assert train_main(["keep", "--run", str(run), "--name", "rw-c", "--out", str(tmp_path)]) == 0
    card = json.loads((tmp_path / "rw-c.json").read_text())
    assert card["sha256"] == hashlib.sha256((tmp_path / "rw-c.pt").read_bytes()).hexdigest()  # written together
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    assert card["kind"] == "contrastive" and card["data"] and all(d["license"] != "unknown" for d in card["data"])
    kept = torch.load(tmp_path / "rw-c.pt", weights_only=True)
    assert all(v.dtype == torch.bfloat16 for v in kept["model"].values() if v.is_floating_point())
    a, _ = load_reward(run)
    b, _ = load_reward(tmp_path / "rw-c.pt")
    x = torch.randint(260, 620, (2, 34))
    x[:, 0] = 1
    with torch.no_grad():
        ea, eb = a.embed_chords(x), b.embed_chords(x)
    assert torch.nn.functional.cosine_similarity(ea, eb).min() > 0.999
    assert train_main(["keep", "--run", str(tmp_path / "nothing"), "--name", "x", "--out", str(tmp_path)]) == 2
    assert "not a training run" in capsys.readouterr().err
