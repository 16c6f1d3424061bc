"""The offline teacher: cached cross-attention K/V decode like the full forward; its ONNX bundle matches torch, is
told apart from an online bundle by its role, and fills an intro's chords under the grammar in the app."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.bundle import BundleError, load_bundle
from app.engine.grammar import Grammar
from app.engine.policy import OnnxPolicy
from app.engine.teacher import OnnxTeacher
from training.checkpoints import load_model
from training.data import tokens as T
from training.export import compare_teacher_with_torch, export_bundle
from training.models.teacher import OfflineTeacher
from training.models.transformer import preset

G = Grammar.from_table(T.token_table())
MELODY = [T.NOTE_ON + 60] + [T.NOTE_HOLD + 60] * 3 + [T.SILENCE] * 4 + [T.NOTE_ON + 64, T.NOTE_HOLD + 64] * 4


@pytest.fixture(scope="module")
def teacher_bundle(tiny_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    export_bundle(tiny_teacher, "teacher-test", out)
    return out / "teacher-test.json"


def test_cached_cross_kv_decoding_matches_the_full_forward():
    torch.manual_seed(0)
    teacher = OfflineTeacher(preset("tiny")).eval()
    mel = torch.randint(T.SILENCE, T.CHORD_HOLD, (2, 40))
    mel[1, 30:] = T.PAD
    chords = torch.randint(T.CHORD_HOLD, T.VOCAB_SIZE, (2, 20))
    with torch.no_grad():
        enc = teacher.encode(mel)
        # the reference re-projects the memory in every layer (no precomputed K/V), as before the cache existed
        h, _ = teacher.decoder(chords, memory=enc.memory, memory_padding=enc.padding)
        full = teacher.lm_head(h)
        out, cache = teacher(mel, chords[:, :1], memory=enc)
        parts = [out]
        for t in range(1, 20):
            out, cache = teacher(mel, chords[:, t:t + 1], past=cache, start=t, memory=enc)
            parts.append(out)
    assert len(enc.cross_kv) == teacher.cfg.n_layer
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


def test_teacher_onnx_matches_torch_at_several_lengths(tiny_teacher, teacher_bundle):
    teacher, _ = load_model(tiny_teacher)
    bundle = load_bundle(teacher_bundle)
    assert compare_teacher_with_torch(teacher, bundle.onnx_path, seed=7) <= 1e-4
    card = bundle.card
    assert bundle.role == card["role"] == card["model"]["kind"] == "offline_teacher"
    assert card["interleave"] == "separate" and card["onnx"]["inputs"] == ["melody", "chords"]
    assert card["onnx"]["max_abs_logit_diff_vs_torch"] <= 1e-4
    assert len(card["tokens"]) == card["vocab_size"] == T.VOCAB_SIZE


def test_online_card_says_its_role(tiny_bundle):
    card = json.loads(tiny_bundle.read_text())
    assert card["role"] == "online_policy" and card["interleave"] == "chord_first"


def test_fill_is_grammatical_and_deterministic_for_a_seed(tiny_teacher, teacher_bundle):
    teacher = OnnxTeacher(load_bundle(teacher_bundle), threads=1)
    chords = teacher.fill(MELODY, np.random.default_rng(0), temperature=1.0)
    assert len(chords) == len(MELODY)
    prev = None
    for c in chords:
        assert G.is_valid("chord", prev, c), (prev, c)  # a hold only continues the chord sounding
        prev = c
    assert teacher.fill(MELODY, np.random.default_rng(0), temperature=1.0) == chords
    assert teacher.fill([], np.random.default_rng(0)) == []
    # the app's graph gives torch's logits for the same inputs
    torch_teacher, _ = load_model(tiny_teacher)
    with torch.no_grad():
        ref, _ = torch_teacher(torch.tensor([[T.BOS, *MELODY]]), torch.tensor([[T.BOS, *chords[:5]]]))
    assert np.abs(teacher.logits(MELODY, chords[:5]) - ref[0].numpy()).max() <= 1e-4


def test_greedy_fill_with_top_k_and_top_p(teacher_bundle):
    teacher = OnnxTeacher(load_bundle(teacher_bundle))
    a = teacher.fill(MELODY, np.random.default_rng(1), temperature=0.0)
    b = teacher.fill(MELODY, np.random.default_rng(2), temperature=0.0)
    assert a == b
    c = teacher.fill(MELODY, np.random.default_rng(3), temperature=1.0, top_k=3, top_p=0.9)
    assert len(c) == len(MELODY)


def test_each_runner_refuses_the_other_role(teacher_bundle, tiny_bundle):
    with pytest.raises(BundleError, match=r"teacher-test\.json: an offline_teacher bundle cannot be run as an "
                                          r"online_policy"):
        OnnxPolicy(load_bundle(teacher_bundle))
    with pytest.raises(BundleError, match=r"tiny-test\.json: an online_policy bundle cannot be run as an "
                                          r"offline_teacher"):
        OnnxTeacher(load_bundle(tiny_bundle))


def copy_bundle(card_path, dst):
    dst.mkdir()
    for f in card_path.parent.glob(f"{card_path.stem}*"):
        shutil.copy(f, dst / f.name)
    return dst / card_path.name


def test_a_teacher_whose_weights_give_nan_is_refused_when_it_loads(teacher_bundle, tmp_path):
    from fault_helpers import nan_weights_copy

    card = nan_weights_copy(teacher_bundle, tmp_path, "teacher-nan")
    with pytest.raises(BundleError) as e:
        OnnxTeacher(load_bundle(card))
    assert str(e.value) == (f"{tmp_path / 'teacher-nan.onnx'}: the model gave NaN or inf logits on a short prompt: "
                            f"refused")


def test_unknown_role_is_refused_and_no_role_means_online(teacher_bundle, tiny_bundle, tmp_path):
    card = copy_bundle(teacher_bundle, tmp_path / "t")
    data = json.loads(card.read_text())
    data["role"] = "drummer"
    card.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"teacher-test\.json: unknown role 'drummer'"):
        load_bundle(card)
    old = copy_bundle(tiny_bundle, tmp_path / "o")
    data = json.loads(old.read_text())
    del data["role"]
    old.write_text(json.dumps(data))
    assert load_bundle(old).role == "online_policy"
    OnnxPolicy(load_bundle(old))


def test_models_command_lists_the_teacher_with_its_role(teacher_bundle, capsys, monkeypatch):
    from app.cli import main

    monkeypatch.setenv("COMPER_MODELS", str(teacher_bundle.parent))
    assert main(["models"]) == 0
    assert "offline_teacher" in capsys.readouterr().out


def test_int8_teacher_replaces_fp32_only_when_its_greedy_chords_agree(tiny_teacher, tmp_path):
    card = export_bundle(tiny_teacher, "teacher-q", tmp_path, int8=True)
    bundle = load_bundle(tmp_path / "teacher-q.json")
    assert not (tmp_path / "teacher-q-int8.onnx").exists()  # one graph ships, never both
    if card["int8_greedy_agreement"] == 1.0:
        assert card["weights"].startswith("int8")
    else:
        assert card["weights"] == "fp32"
    chords = OnnxTeacher(bundle).fill([200, 70, 70, 3], np.random.default_rng(0), temperature=0)
    assert len(chords) == 4


def test_the_default_model_prefers_gapt_and_never_a_teacher(teacher_bundle, tiny_bundle, tmp_path, monkeypatch,
                                                            capsys):
    from app.engine.bundle import default_model, resolve_model, shipped_teacher

    monkeypatch.setenv("COMPER_MODELS", str(tmp_path))

    def ship(src, name):
        for suffix in (".onnx", ".json"):
            shutil.copy(src.with_suffix(suffix), tmp_path / f"{name}{suffix}")
        card = json.loads((tmp_path / f"{name}.json").read_text())
        card["name"], card["onnx"]["file"] = name, f"{name}.onnx"
        (tmp_path / f"{name}.json").write_text(json.dumps(card))

    ship(teacher_bundle, "aaa-teacher")
    with pytest.raises(BundleError, match="no playable model"):
        default_model()
    ship(tiny_bundle, "zzz-policy")
    assert default_model() == "zzz-policy"  # the only playable one, though not a preferred name
    ship(tiny_bundle, "online-mle")
    assert default_model() == "online-mle"
    ship(tiny_bundle, "gapt")
    assert default_model() == "gapt" and resolve_model(None) == tmp_path / "gapt.json"
    assert shipped_teacher().name == "aaa-teacher"
    from app.cli import main

    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"aaa-teacher", "zzz-policy", "online-mle", "gapt"}
    assert [n for n, r in rows.items() if r["default"]] == ["gapt"]


def test_the_teachers_intro_filler_writes_its_chords_into_the_planners_history(teacher_bundle, tiny_bundle):
    from app.engine.planner import Planner, PlanSettings
    from app.engine.simulate import simulate

    policy = OnnxPolicy(load_bundle(tiny_bundle))
    plan = PlanSettings(lookahead_beats=2, commit_beats=1, listen_beats=4, seed=4)
    planner = Planner(policy, plan, intro=OnnxTeacher(load_bundle(teacher_bundle)).intro_filler(plan.seed))
    jam = simulate(planner, [(60 + (f // 2) % 5, f % 2 == 0) for f in range(30)])
    heard = plan.listen - plan.commit  # the fill runs on the melody heard one frame before the first promise
    expected = OnnxTeacher(load_bundle(teacher_bundle)).intro_filler(plan.seed)([m for _, m in planner.history[:heard]])
    assert [c for c, _ in planner.history[:heard]] == expected
    assert all(c == planner.vocab.silence for c in jam.chords[:plan.listen])  # context only, never played


SHIPPED = Path(__file__).resolve().parents[1] / "models"
TEACHER_CARD_PROBES = {  # a bad teacher card: what it says, after "<card file>: "
    "special {}": (lambda c: c.update(special={}), r"special: missing pad, bos, eos, silence"),
    "context_frames 0": (lambda c: c.update(context_frames=0), r"context_frames: 0 is not a number of frames"),
    "a policy's interleave": (lambda c: c.update(interleave="chord_first"),
                              r"interleave: 'chord_first', but an offline_teacher graph reads 'separate'"),
    "onnx as a string": (lambda c: c.update(onnx="offline-teacher.onnx"), r"onnx: expected an object, got str"),
}


@pytest.mark.parametrize("probe", TEACHER_CARD_PROBES)
def test_a_bad_shipped_teacher_card_is_refused_in_one_line(probe, tmp_path, capsys, monkeypatch):
    import re

    from app.cli import main

    change, says = TEACHER_CARD_PROBES[probe]
    for suffix in (".onnx", ".json"):
        shutil.copy(SHIPPED / f"offline-teacher{suffix}", tmp_path / f"offline-teacher{suffix}")
    card = tmp_path / "offline-teacher.json"
    data = json.loads(card.read_text())
    change(data)
    card.write_text(json.dumps(data))
    with pytest.raises(BundleError) as e:
        OnnxTeacher(load_bundle(card))
    line = str(e.value)
    assert re.fullmatch(rf"{re.escape(str(card))}: {says}.*", line) and "\n" not in line
    monkeypatch.setenv("COMPER_MODELS", str(tmp_path))
    from app.engine.bundle import shipped_teacher

    assert shipped_teacher() is None  # a refused teacher fills no intro
    assert main(["models"]) == 2 and f"REFUSED: {line}" in capsys.readouterr().out


def test_the_shipped_teacher_card_is_typed():
    from app.engine.card import Card

    card = Card.load(SHIPPED / "offline-teacher.json")
    assert card.role == "offline_teacher" and card.interleave == "separate" and card.context_frames == 256
    assert card.vocab.to_table() == T.token_table() and card.int8 is None and card.stage == "mle"
    teacher = OnnxTeacher(load_bundle(SHIPPED / "offline-teacher.json"))
    assert (teacher.bos, teacher.eos, teacher.context_frames) == (T.BOS, T.EOS, 256)
