"""Export a trained model as a bundle: ``<name>.onnx`` + ``<name>.json`` (the app's contract).

Two graph kinds, told apart by the card's ``role``:

- ``online_policy`` (the chord player): ``tokens`` [batch, chunk], ``start`` (position of the chunk's first
  token) and the KV cache ``past_k`` / ``past_v`` [layers, batch, heads, past, head_dim] -> ``logits``
  [batch, chunk, vocab] and the extended cache. Batch, chunk and past are dynamic, so one graph serves a prefill
  (a long chunk on an empty cache) and steps (chunks of 1 or 2). Checked against torch over a prefill + 50 steps;
  the optional int8 variant is kept only if it picks the same greedy chords. ``fp16`` halves the file instead: the
  parameters are rounded to fp16 *before* export (so the torch check and every evaluation see the shipped weights)
  and stored as fp16 initializers, each behind a Cast to fp32 that onnxruntime folds at load: fp32 compute, the
  same step time, half the bytes.
- ``offline_teacher`` (fills the chords of the app's listen-first intro): ``melody`` [batch, M] (``BOS``, melody
  tokens, ``EOS`` where the song ends) and ``chords`` [batch, C] (``BOS``, the chords so far) -> ``logits``
  [batch, C, vocab]. No cache, a full recompute per call: it only ever runs over a short intro. Checked against
  torch at several lengths.

Every export must agree with torch within 1e-4 (max |logit diff|) before the card is written. The graph is run
for those checks (and for the int8 variants' greedy chords, at temperature 0) by the app's own runners,
``OnnxPolicy`` / ``OnnxTeacher`` (``app_runner``), so the path that ships is the path tested; the card is an
``app.engine.card.Card``, checked as the app checks it before it is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.engine.bundle import Bundle
from app.engine.bundle import sha256_file as sha256
from app.engine.card import FORMAT_VERSION, Card, GraphFile, ModelInfo
from app.engine.policy import OnnxPolicy
from app.engine.teacher import OnnxTeacher
from app.engine.vocab import Quality, Vocabulary

from .data import tokens as T
from .data.chords import QUALITIES
from .data.codec import FRAMES_PER_BEAT
from .models.policy import OnlinePolicy
from .models.teacher import OfflineTeacher

OPSET = 18
TOLERANCE = 1e-4
CONTEXT_FRAMES = 256  # the training window
DATA_LICENSES = {
    "pop909": "MIT (POP909 dataset, Wang et al. 2020)",
    "nottingham": "GPL-3.0 (jukedeck cleaned Nottingham Music Database repository); traditional tunes",
    "chord_melody_dataset": "MIT repository (shiehn/chord-melody-dataset); lead sheets of copyrighted songs: "
                            "research use",
    "openewld": "MIT / public-domain scores (OpenEWLD); evaluation only",
    "hooktheory": "CC BY-NC-SA 3.0 (Sheet Sage Hooktheory melody clips)",
}


@dataclass(frozen=True)
class GraphKind:
    """What a card says about its graph; the app picks its runner by ``role``."""

    role: str  # also the card's model kind
    interleave: str
    context_tokens: int  # the longest token sequence of training (per stream for the teacher)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


ONLINE = GraphKind("online_policy", "chord_first", 2 * CONTEXT_FRAMES + 2,
                   ("tokens", "start", "past_k", "past_v"), ("logits", "present_k", "present_v"))
TEACHER = GraphKind("offline_teacher", "separate", CONTEXT_FRAMES + 2, ("melody", "chords"), ("logits",))


class CachedStep(nn.Module):
    """The policy with its KV cache as explicit tensors, the shape ONNX needs."""

    def __init__(self, policy: OnlinePolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, tokens: torch.Tensor, start: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor):
        past = [(past_k[i], past_v[i]) for i in range(past_k.shape[0])]
        logits, cache = self.policy(tokens, past=past, start=start)
        return logits, torch.stack([k for k, _ in cache]), torch.stack([v for _, v in cache])


def export_onnx(policy: OnlinePolicy, path: Path) -> None:
    policy = policy.eval()
    cfg = policy.cfg
    b, chunk, past = 2, 5, 3
    example = (torch.randint(4, cfg.vocab_size, (b, chunk)), torch.tensor(past, dtype=torch.int64),
               torch.zeros(cfg.n_layer, b, cfg.n_head, past, cfg.head_dim),
               torch.zeros(cfg.n_layer, b, cfg.n_head, past, cfg.head_dim))
    from torch.export import Dim

    batch, chunk_dim, past_dim = Dim("batch"), Dim("chunk"), Dim("past")
    dynamic = {"tokens": {0: batch, 1: chunk_dim}, "start": None, "past_k": {1: batch, 3: past_dim},
               "past_v": {1: batch, 3: past_dim}}
    torch.onnx.export(CachedStep(policy).eval(), example, str(path), input_names=list(ONLINE.inputs),
                      output_names=list(ONLINE.outputs), dynamic_shapes=dynamic,
                      opset_version=OPSET, dynamo=True, external_data=False, verbose=False)


class TeacherLogits(nn.Module):
    """The teacher as one full-recompute graph: (melody, chords) -> logits, the encoder run inside it."""

    def __init__(self, teacher: OfflineTeacher) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, melody: torch.Tensor, chords: torch.Tensor) -> torch.Tensor:
        logits, _ = self.teacher(melody, chords)
        return logits


def teacher_inputs(rng: np.random.Generator, batch: int, frames: int, chords: int) -> tuple[np.ndarray, np.ndarray]:
    """Random teacher inputs: melody [batch, frames + 2] = BOS, melody tokens, EOS; chords [batch, chords] = BOS,
    chord tokens."""
    mel = rng.integers(T.SILENCE, T.CHORD_HOLD, (batch, frames + 2))
    mel[:, 0], mel[:, -1] = T.BOS, T.EOS
    ch = rng.integers(T.CHORD_HOLD, T.VOCAB_SIZE, (batch, chords))
    ch[:, 0] = T.BOS
    return mel.astype(np.int64), ch.astype(np.int64)


def export_teacher_onnx(teacher: OfflineTeacher, path: Path) -> None:
    teacher = teacher.eval()
    mel, ch = teacher_inputs(np.random.default_rng(0), 2, 7, 5)
    from torch.export import Dim

    batch, mel_dim, ch_dim = Dim("batch"), Dim("melody"), Dim("chords")
    dynamic = {"melody": {0: batch, 1: mel_dim}, "chords": {0: batch, 1: ch_dim}}
    torch.onnx.export(TeacherLogits(teacher).eval(), (torch.as_tensor(mel), torch.as_tensor(ch)), str(path),
                      input_names=list(TEACHER.inputs), output_names=list(TEACHER.outputs), dynamic_shapes=dynamic,
                      opset_version=OPSET, dynamo=True, external_data=False, verbose=False)


def graph_card(onnx_path: Path, kind: GraphKind = ONLINE, name: str | None = None) -> Card:
    """The card of a graph of this training code before its provenance is added: what the app needs to run it
    (vocabulary, lengths, role, the file and its sha256)."""
    return Card(name=name or onnx_path.stem, vocab=Vocabulary.from_table(T.token_table()),
                onnx=GraphFile(onnx_path.name, sha256(onnx_path), OPSET, kind.inputs, kind.outputs),
                context_tokens=kind.context_tokens, role=kind.role, frames_per_beat=FRAMES_PER_BEAT,
                context_frames=CONTEXT_FRAMES, format_version=FORMAT_VERSION, interleave=kind.interleave,
                qualities=tuple(Quality(q.name, tuple(q.intervals), q.suffix) for q in QUALITIES))


def app_runner(onnx_path: Path, kind: GraphKind = ONLINE, threads: int = 1) -> OnnxPolicy | OnnxTeacher:
    """The app's runner for a graph (``OnnxPolicy``, or ``OnnxTeacher`` for the teacher), loaded as a jam loads
    it (one forward pass must give finite logits)."""
    bundle = Bundle(graph_card(onnx_path, kind), onnx_path.with_suffix(".json"), onnx_path)
    return (OnnxTeacher if kind is TEACHER else OnnxPolicy)(bundle, threads)


def compare_with_torch(policy: OnlinePolicy, onnx_path: Path, prompt: np.ndarray, steps: int = 50,
                       seed: int = 0) -> float:
    """Max |logit difference| between torch and the app's ``OnnxPolicy`` over a prefill of ``prompt`` then
    ``steps`` single random tokens (both fed the same tokens)."""
    runner = app_runner(onnx_path)
    cfg = policy.cfg
    tok = torch.as_tensor(prompt[None], dtype=torch.int64)
    with torch.no_grad():
        t_logits, t_cache = policy(tok)
        o_logits, state = runner.run([int(t) for t in prompt], runner.empty())
        worst = float(np.abs(t_logits[0].numpy() - o_logits).max())
        pos = tok.shape[1]
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            nxt = int(rng.integers(4, cfg.vocab_size))
            t_logits, t_cache = policy(torch.tensor([[nxt]]), past=t_cache, start=pos)
            o_logits, state = runner.run([nxt], state)
            worst = max(worst, float(np.abs(t_logits[0].numpy() - o_logits).max()))
            pos += 1
    return worst


TEACHER_SHAPES = ((1, 1, 1), (1, 16, 9), (2, 64, 40), (3, 100, 101), (1, CONTEXT_FRAMES, CONTEXT_FRAMES + 1))


def compare_teacher_with_torch(teacher: OfflineTeacher, onnx_path: Path,
                               shapes: tuple[tuple[int, int, int], ...] = TEACHER_SHAPES, seed: int = 0) -> float:
    """Max |logit difference| between torch and the app's ``OnnxTeacher`` over random inputs of each (batch,
    melody frames, chord tokens) in ``shapes``: the graph's lengths are dynamic, so one length proves little. The
    app feeds one song at a time (``OnnxTeacher.logits``, which frames it with BOS / EOS as training does): each
    row of a batch is fed so."""
    runner = app_runner(onnx_path, TEACHER)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for batch, frames, chords in shapes:
        mel, ch = teacher_inputs(rng, batch, frames, chords)
        with torch.no_grad():
            ref, _ = teacher(torch.as_tensor(mel), torch.as_tensor(ch))
        for i in range(batch):
            got = runner.logits(mel[i, 1:-1], ch[i, 1:], at_end=True)
            worst = max(worst, float(np.abs(ref[i].numpy() - got).max()))
    return worst


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def store_fp16(path: Path, min_elements: int = 1024) -> int:
    """Rewrite ``path`` with its large fp16-exact fp32 initializers (the parameters after ``round_to_fp16``) stored
    as fp16 behind a Cast; returns the number converted. onnxruntime's own float16 converter turns
    the *compute* to fp16, which its CPU kernels run slowly or not at all; here only the storage changes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16) if init.data_type == TensorProto.FLOAT and arr.size >= min_elements else None
        if half is not None and np.array_equal(half.astype(np.float32), arr):  # buffers (rotary tables) stay fp32
            kept.append(numpy_helper.from_array(half, f"{init.name}__fp16"))
            casts.append(helper.make_node("Cast", [f"{init.name}__fp16"], [init.name], to=TensorProto.FLOAT,
                                          name=f"{init.name}__cast"))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(casts)


def round_to_fp16(model: nn.Module) -> nn.Module:
    """The model with every parameter rounded to the nearest fp16 value (kept in fp32)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def greedy_chords(onnx_path: Path, melodies: list[np.ndarray]) -> list[list[int]]:
    """The app's greedy chords (``OnnxPolicy.accompany`` at temperature 0) against fixed melody token sequences."""
    runner = app_runner(onnx_path)
    return [runner.accompany([int(m) for m in mel], np.random.default_rng(0), temperature=0.0) for mel in melodies]


def write_card(path: Path, name: str, onnx_file: Path, model: nn.Module, ckpt: dict, max_diff: float,
               extra: dict | None = None) -> Card:
    """The card, the same fields for every graph kind (``role`` tells the app which runner takes it), checked as
    the app checks it and written to ``path``. ``extra``: more fields from the export (``int8``: a ``GraphFile``;
    ``weights`` ...)."""
    kind = TEACHER if isinstance(model, OfflineTeacher) else ONLINE
    cfg = model.cfg
    sources = list(ckpt.get("mix", {}))
    extra = dict(extra or {})
    base = graph_card(onnx_file, kind, name)
    card = replace(
        base, source=path, onnx=replace(base.onnx, max_abs_logit_diff_vs_torch=max_diff), int8=extra.pop("int8", None),
        model=ModelInfo(kind.role, cfg.n_layer, cfg.n_head, cfg.d_model, cfg.head_dim, model.num_params(),
                        ckpt.get("config_name")),
        training={"stage": ckpt.get("stage", "mle"), "steps": ckpt.get("step"), "checkpoint": ckpt.get("file"),
                  "recipe": ckpt.get("recipe"), "mix": ckpt.get("mix"), "best_val": ckpt.get("best_val"),
                  "val": ckpt.get("val"), "rl": ckpt.get("rl_config"), "init_steps": ckpt.get("init_step")},
        meta={"created": time.strftime("%Y-%m-%d"),
              "data": [{"source": s, "license": DATA_LICENSES.get(s, "unknown")} for s in sources], **extra})
    card.save(path)
    return card


def check_diff(onnx_path: Path, diff: float) -> None:
    """Delete a graph that disagrees with torch, and say so."""
    if diff > TOLERANCE:
        onnx_path.unlink()
        raise RuntimeError(f"{onnx_path}: ONNX logits differ from torch by {diff:.2e} (> {TOLERANCE}); not exported")


def export_online(policy: OnlinePolicy, onnx_path: Path, int8: bool,
                  melodies: list[np.ndarray] | None, fp16: bool = False) -> tuple[float, dict]:
    """The online policy's cached-step graph (and its int8 variant); returns (max diff vs torch, extra card)."""
    if fp16:
        round_to_fp16(policy)
    export_onnx(policy, onnx_path)
    rng = np.random.default_rng(0)
    prompt = np.concatenate([[T.BOS], rng.integers(4, T.VOCAB_SIZE, 255)])
    extra = {}
    if fp16:
        extra["weights"] = (f"fp16 storage ({store_fp16(onnx_path)} tensors): parameters rounded to fp16 before "
                            f"export, computed in fp32; the torch check and the evaluation use the rounded weights")
    diff = compare_with_torch(policy, onnx_path, prompt, steps=50)
    check_diff(onnx_path, diff)
    if int8:
        q_path = onnx_path.with_name(f"{onnx_path.stem}-int8.onnx")
        quantize_int8(onnx_path, q_path)
        mels = melodies or [rng.integers(T.NOTE_HOLD, T.CHORD_HOLD, 64) for _ in range(4)]
        same = greedy_chords(onnx_path, mels) == greedy_chords(q_path, mels)
        if same:
            extra["int8"] = GraphFile(q_path.name, sha256(q_path), same_greedy_chords=True)
        else:
            q_path.unlink()
            extra["int8"] = GraphFile(None, same_greedy_chords=False)
    return diff, extra


def teacher_greedy(onnx_path: Path, melodies: list[np.ndarray]) -> list[list[int]]:
    """The app's greedy intro fill (``OnnxTeacher.fill`` at temperature 0) for whole melodies."""
    runner = app_runner(onnx_path, TEACHER)
    return [runner.fill([int(m) for m in mel], np.random.default_rng(0), temperature=0.0) for mel in melodies]


def export_teacher(teacher: OfflineTeacher, onnx_path: Path, int8: bool = False,
                   melodies: list[np.ndarray] | None = None) -> tuple[float, dict]:
    """The offline teacher's full-recompute graph; returns (max diff vs torch, extra card).

    ``int8``: ship the dynamically quantized graph *instead* of the fp32 one (a quarter of the size: the teacher
    is the largest file in ``models/`` and only fills an intro), but only if it picks the same greedy chords as
    the fp32 graph on every check melody; otherwise the fp32 graph stays."""
    export_teacher_onnx(teacher, onnx_path)
    diff = compare_teacher_with_torch(teacher, onnx_path)
    check_diff(onnx_path, diff)
    if not int8:
        return diff, {}
    rng = np.random.default_rng(0)
    mels = melodies or [rng.integers(T.NOTE_HOLD, T.CHORD_HOLD, 32) for _ in range(6)]
    q_path = onnx_path.with_name(f"{onnx_path.stem}-int8.onnx")
    quantize_int8(onnx_path, q_path)
    agree = float(np.mean([a == b for x, y in zip(teacher_greedy(onnx_path, mels), teacher_greedy(q_path, mels))
                           for a, b in zip(x, y)]))
    if agree < 1.0:
        q_path.unlink()
        return diff, {"weights": "fp32", "int8_greedy_agreement": agree}
    q_path.replace(onnx_path)
    return diff, {"weights": "int8 (dynamic quantization; the fp32 graph matched torch within the tolerance and "
                             f"the int8 one picks the same greedy chords on {len(mels)} check melodies)",
                  "int8_greedy_agreement": agree}


def export_bundle(run: Path, name: str, out_dir: Path, int8: bool = False, which: str = "best",
                  melodies: list[np.ndarray] | None = None, fp16: bool = False) -> Card:
    """Export a run's model (online policy or offline teacher, from the checkpoint's ``kind``) to
    ``out_dir/name.{onnx,json}``; raises if ONNX and torch disagree."""
    from .checkpoints import load_model

    model, ckpt = load_model(run, which)
    if ckpt["kind"] not in ("online", "offline"):  # the melody agent's melody-first stream is not a chord player
        raise ValueError(f"{run}: holds a {ckpt['kind']} model; only online policies and offline teachers are "
                         f"bundled for the app")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    if isinstance(model, OfflineTeacher):
        diff, extra = export_teacher(model, onnx_path, int8, melodies)
    else:
        diff, extra = export_online(model, onnx_path, int8, melodies, fp16)
    return write_card(out_dir / f"{name}.json", name, onnx_path, model, ckpt, diff, extra)
