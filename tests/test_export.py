"""The model bundle: ONNX export matches torch, the card is complete, bad bundles are refused, the app runs it."""

import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from app.engine.bundle import BundleError, load_bundle
from app.engine.grammar import Grammar
from app.engine.policy import OnnxPolicy
from training.checkpoints import load_model
from training.data import tokens as T
from training.export import compare_with_torch, export_bundle, export_onnx


@pytest.fixture(scope="module")
def bundle_dir(tiny_bundle):
    return tiny_bundle.parent


def test_onnx_matches_torch_over_a_prefill_and_50_steps(tiny_run, tmp_path):
    policy, _ = load_model(tiny_run)
    export_onnx(policy, tmp_path / "p.onnx")
    prompt = np.concatenate([[T.BOS], np.random.default_rng(3).integers(4, T.VOCAB_SIZE, 200)])
    assert compare_with_torch(policy, tmp_path / "p.onnx", prompt, steps=50) <= 1e-4


def run_bundle(card_path, seq):
    policy = OnnxPolicy(load_bundle(card_path))
    return policy.run(seq, policy.empty())[0]


def test_fp16_storage_halves_the_file_and_plays_the_rounded_weights(tiny_run, tmp_path):
    import onnx

    full = export_bundle(tiny_run, "full", tmp_path, which="last")
    half = export_bundle(tiny_run, "half", tmp_path, which="last", fp16=True)
    assert half["onnx"]["max_abs_logit_diff_vs_torch"] <= 1e-4 and "fp16 storage" in half["weights"]
    graph = onnx.load(str(tmp_path / "half.onnx")).graph
    fp16 = [i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert fp16 and sum(n.op_type == "Cast" for n in graph.node) >= len(fp16)
    assert (tmp_path / "half.onnx").stat().st_size < 0.7 * (tmp_path / "full.onnx").stat().st_size
    # the app runs it like any bundle, and its logits are the fp16-rounded model's, close to the full one's
    policy, _ = load_model(tiny_run, "last")
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(p.half().float())
        seq = [T.BOS, T.CHORD_ON + 3, T.NOTE_ON + 62, T.CHORD_HOLD + 3, T.NOTE_HOLD + 62]
        ref, _ = policy(torch.tensor([seq]))
    logits, full_logits = (run_bundle(tmp_path / f"{name}.json", seq) for name in ("half", "full"))
    assert np.abs(logits - ref[0].numpy()).max() <= 1e-4
    assert 0 < np.abs(full_logits - logits).max() < 0.05
    assert full["onnx"]["sha256"] != half["onnx"]["sha256"]


def test_card_is_complete(bundle_dir):
    card = json.loads((bundle_dir / "tiny-test.json").read_text())
    assert card["format_version"] == 1 and card["name"] == "tiny-test"
    assert card["frames_per_beat"] == 4 and card["context_tokens"] == 514
    assert len(card["tokens"]) == card["vocab_size"] == T.VOCAB_SIZE
    chord = card["tokens"][T.CHORD_ON + 0]
    assert chord["kind"] == "chord_on" and chord["symbol"] == "C" and chord["pitch_classes"] == [0, 4, 7]
    assert card["onnx"]["max_abs_logit_diff_vs_torch"] <= 1e-4
    assert len(card["onnx"]["sha256"]) == 64
    assert card["training"]["steps"] == 6 and card["training"]["checkpoint"] == "ckpt_best.pt"
    assert {d["source"] for d in card["data"]} == {"pop909", "nottingham", "chord_melody_dataset"}
    assert all(d["license"] != "unknown" for d in card["data"])
    assert "int8" in card and card["int8"]["same_greedy_chords"] in (True, False)


def test_app_plays_the_bundle_under_the_grammar(bundle_dir):
    policy = OnnxPolicy(load_bundle(bundle_dir / "tiny-test.json"), threads=1)
    melody = [T.NOTE_ON + 60] + [T.NOTE_HOLD + 60] * 3 + [T.SILENCE] * 4 + [T.NOTE_ON + 64] * 8
    chords = policy.accompany(melody, np.random.default_rng(0), temperature=1.0)
    g = Grammar.from_table(T.token_table())
    prev = None
    for c in chords:
        assert g.is_valid("chord", prev, c)
        prev = c
    # a state is immutable: branching off it twice gives the same logits
    logits, s1 = policy.run([T.BOS], policy.empty())
    a, _ = policy.run([T.CHORD_ON, T.NOTE_ON + 60], s1, chord_first_slot=True)
    b, _ = policy.run([T.CHORD_ON, T.NOTE_ON + 60], s1, chord_first_slot=True)
    assert np.array_equal(a, b) and s1.length == 1


def test_onnx_policy_agrees_with_torch(tiny_run, bundle_dir):
    torch_policy, _ = load_model(tiny_run)
    policy = OnnxPolicy(load_bundle(bundle_dir / "tiny-test"))
    seq = [T.BOS, T.CHORD_ON + 3, T.NOTE_ON + 62, T.CHORD_HOLD + 3, T.NOTE_HOLD + 62]
    logits, state = policy.run(seq[:3], policy.empty())
    more, _ = policy.run(seq[3:], state)
    with torch.no_grad():
        ref, _ = torch_policy(torch.tensor([seq]))
    assert np.abs(np.concatenate([logits, more]) - ref[0].numpy()).max() <= 1e-4


def copy_bundle(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst / "tiny-test.json"


def edit_card(card_path, change):
    card = json.loads(card_path.read_text())
    change(card)
    card_path.write_text(json.dumps(card))


def test_missing_onnx_is_refused(bundle_dir, tmp_path):
    card = copy_bundle(bundle_dir, tmp_path / "b")
    (tmp_path / "b" / "tiny-test.onnx").unlink()
    with pytest.raises(BundleError, match=r"tiny-test\.onnx: ONNX file named by tiny-test\.json not found"):
        load_bundle(card)


def test_changed_onnx_fails_the_sha256_check(bundle_dir, tmp_path):
    card = copy_bundle(bundle_dir, tmp_path / "b")
    with open(tmp_path / "b" / "tiny-test.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256 .* does not match"):
        load_bundle(card)


def test_unknown_format_version_is_refused(bundle_dir, tmp_path):
    card = copy_bundle(bundle_dir, tmp_path / "b")
    edit_card(card, lambda c: c.update(format_version=99))
    with pytest.raises(BundleError, match="tiny-test.json: unknown format_version 99"):
        load_bundle(card)


def drop_last_quality(c: dict) -> None:
    """A card for a vocabulary with one chord quality fewer: a well-formed table, but not the graph's."""
    qualities = c["chord_qualities"][:-1]
    nq = len(qualities)
    old = {(t["kind"], t["root"], t["quality"]): t for t in c["tokens"] if "chord" in t}
    tokens = [t for t in c["tokens"] if "chord" not in t]
    for kind in ("chord_hold", "chord_on"):
        for chord in range(12 * nq):
            root, q = divmod(chord, nq)
            tokens.append(dict(old[(kind, root, qualities[q]["name"])], id=len(tokens), chord=chord))
    c.update(chord_qualities=qualities, tokens=tokens, vocab_size=len(tokens))


def test_token_table_that_does_not_match_the_graph_is_refused(bundle_dir, tmp_path):
    card = copy_bundle(bundle_dir, tmp_path / "b")
    edit_card(card, drop_last_quality)
    with pytest.raises(BundleError, match=r"graph vocabulary 620 does not match the card's token table \(596"):
        OnnxPolicy(load_bundle(card))


def test_a_bundle_whose_weights_give_nan_is_refused_when_it_loads_in_one_line(nan_bundle, tmp_path, capsys,
                                                                             monkeypatch):
    from app.cli import main

    load_bundle(nan_bundle)  # the card and its hash are fine: only a forward pass can tell
    said = f"{nan_bundle.with_suffix('.onnx')}: the model gave NaN or inf logits on a short prompt: refused"
    with pytest.raises(BundleError) as e:
        OnnxPolicy(load_bundle(nan_bundle))
    assert str(e.value) == said
    melody = tmp_path / "m.mid"
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, time=0),
                                      mido.Message("note_off", note=60, time=480)]))
    mid.save(melody)
    assert main(["rejam", str(melody), "-o", str(tmp_path / "out.mid"), "--model", str(nan_bundle),
                 "--teacher", "none"]) == 2
    assert capsys.readouterr().err == f"comper: error: {said}\n"
    assert not (tmp_path / "out.mid").exists()
    monkeypatch.setenv("COMPER_MODELS", str(nan_bundle.parent))
    assert main(["doctor"]) == 1
    assert f"[!!] model tiny-nan: {said}" in capsys.readouterr().out.splitlines()


def test_broken_json_and_missing_card(bundle_dir, tmp_path):
    card = copy_bundle(bundle_dir, tmp_path / "b")
    card.write_text("{ not json")
    with pytest.raises(BundleError, match="tiny-test.json: not valid JSON"):
        load_bundle(card)
    with pytest.raises(BundleError, match="model card not found"):
        load_bundle(tmp_path / "nothing.json")


def test_a_policy_bundle_is_recovered_into_a_run_that_reproduces_its_graph(tiny_bundle, tmp_path, capsys):
    """A new machine starts RL from the shipped bundle: the recovered torch model gives the graph's logits."""
    import json

    import numpy as np
    import torch

    from training.checkpoints import load_model
    from training.cli import main as train_main

    out = tmp_path / "recovered"
    assert train_main(["recover", "--bundle", str(tiny_bundle), "--out", str(out)]) == 0
    assert "max logit difference" in capsys.readouterr().out
    model, ckpt = load_model(out)
    assert ckpt["kind"] == "online" and ckpt["recovered_from"]["bundle"] == "tiny-test"
    from app.engine.bundle import load_bundle
    from app.engine.policy import OnnxPolicy

    policy = OnnxPolicy(load_bundle(tiny_bundle))
    tokens = [1, 440, 60, 260, 62, 441, 3]
    expected, _ = policy.run(tokens, policy.empty())
    with torch.no_grad():
        got = model(torch.tensor([tokens]))[0][0].numpy()
    assert np.abs(got - expected).max() < 1e-3
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_bundle.parent.glob("tiny-test.*"):
        (broken / f.name).write_bytes(f.read_bytes())
    card = json.loads((broken / "tiny-test.json").read_text())
    card["model"]["config_name"] = "small"  # a card that lies about the graph
    (broken / "tiny-test.json").write_text(json.dumps(card))
    assert train_main(["recover", "--bundle", str(broken / "tiny-test.json"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "tiny-test.json" in err and "\n" not in err.strip()


# --- the card, typed and checked (app/engine/card.py): issue 17's bad cards, on copies of the shipped ones ----------

SHIPPED = Path(__file__).resolve().parents[1] / "models"


def shipped_copy(dst: Path, name: str = "gapt", change=None) -> Path:
    """A shipped bundle (card + ONNX) copied into ``dst``, its card changed by ``change``."""
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        shutil.copy(SHIPPED / f"{name}{suffix}", dst / f"{name}{suffix}")
    card = dst / f"{name}.json"
    if change is not None:
        edit_card(card, change)
    return card


def swap_two_chords(c: dict) -> None:
    """Two chord tokens trade places, ids still 0..n-1: the graph would play one chord for the other."""
    t = c["tokens"]
    t[300], t[301] = dict(t[301], id=300), dict(t[300], id=301)


CARD_PROBES = {  # a bad card: what it says, after "<card file>: "
    "onnx without file": (lambda c: c["onnx"].pop("file"), r"onnx\.file: missing"),
    "tokens of the wrong type": (lambda c: c.update(tokens="all of them"),
                                 r"tokens: expected a list of token objects, got str"),
    "special {}": (lambda c: c.update(special={}), r"special: missing pad, bos, eos, silence"),
    "frames_per_beat 3": (lambda c: c.update(frames_per_beat=3),
                          r"frames_per_beat: 3, but this app plays 4 frames per beat"),
    "wrong special ids": (lambda c: c["special"].update(bos=3, silence=1),
                          r"special\.bos: 3, but the token table's bos is 1 \(token 3 is a silence token\)"),
    "reordered token table": (swap_two_chords, r"tokens\[300\]: chord_hold of chord 41 where format 1 has "
                                               r"chord_hold of chord 40 \(a reordered token table\)"),
}


@pytest.mark.parametrize("probe", CARD_PROBES)
def test_a_bad_card_is_one_line_in_models_doctor_and_rejam_and_nothing_runs(probe, tmp_path, capsys, monkeypatch):
    """Issue 17: these gave KeyError / TypeError tracebacks in `comper models`, `doctor` and `rejam`, or played
    with exit 0 and the wrong music."""
    import re

    from app.cli import main

    change, says = CARD_PROBES[probe]
    card = shipped_copy(tmp_path / "models", change=change)
    with pytest.raises(BundleError) as e:
        load_bundle(card)
    line = str(e.value)
    assert re.fullmatch(rf"{re.escape(str(card))}: {says}.*", line) and "\n" not in line
    monkeypatch.setenv("COMPER_MODELS", str(card.parent))
    assert main(["models"]) == 2
    assert capsys.readouterr().out.splitlines() == [f"{'gapt':<24} REFUSED: {line}  ({card})"]
    assert main(["doctor"]) == 1
    assert f"[!!] model gapt: {line}" in capsys.readouterr().out.splitlines()
    melody = SHIPPED.parent / "assets" / "melodies" / "ode_to_joy.mid"
    out = tmp_path / "out.mid"
    assert main(["rejam", str(melody), "-o", str(out), "--model", str(card), "--teacher", "none"]) == 2
    assert capsys.readouterr().err == f"comper: error: {line}\n"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["models"]


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED.glob("*.json") if p.with_suffix(".onnx").exists()))
def test_every_shipped_card_loads_as_a_typed_card_and_writes_back_unchanged(name):
    from app.engine.card import Card

    raw = json.loads((SHIPPED / f"{name}.json").read_text())
    card = Card.load(SHIPPED / f"{name}.json")
    assert card.to_dict() == raw and list(card.to_dict()) == list(raw)  # nothing lost, nothing moved
    assert card.name == name and card.frames_per_beat == 4 and card.vocab_size == len(card.vocab) == T.VOCAB_SIZE
    assert card.vocab.to_table() == T.token_table() and card.vocab.special == {"pad": T.PAD, "bos": T.BOS,
                                                                                "eos": T.EOS, "silence": T.SILENCE}
    assert card.onnx.sha256 == raw["onnx"]["sha256"] and card.stage == raw["training"]["stage"]


def test_a_card_without_the_newer_optional_fields_still_loads(tmp_path):
    """Cards from before ``role``, ``context_frames``, ``interleave`` or ``chord_qualities`` existed load with the
    defaults; a field of the wrong type is still refused."""
    card = shipped_copy(tmp_path, change=lambda c: [c.pop(k) for k in ("role", "context_frames", "interleave",
                                                                        "chord_qualities", "model", "description")])
    bundle = load_bundle(card)
    assert bundle.role == "online_policy" and bundle.card.context_frames == 256 and bundle.card.parameters is None
    edit_card(card, lambda c: c.update(description=["not", "a", "string"]))
    with pytest.raises(BundleError, match=r"gapt\.json: description: expected a string, got a list of 3"):
        load_bundle(card)


def test_export_writes_the_card_the_app_reads(bundle_dir):
    """The exported card is a ``Card``: it reads back as what export wrote."""
    from app.engine.card import Card

    card = Card.load(bundle_dir / "tiny-test.json")
    raw = json.loads((bundle_dir / "tiny-test.json").read_text())
    assert card.to_dict() == raw and card.role == "online_policy" and card.interleave == "chord_first"
    assert card.vocab.to_table() == T.token_table() and card.int8 is not None
    assert (card.int8.file is not None) == card.int8.same_greedy_chords
