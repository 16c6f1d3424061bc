"""`comper-train recover`: a shipped policy bundle back into a torch run folder, so RL can start from it.

Why: a new machine has no ``runs/`` (they are ignored by git and lost after a pause), and MLE pretraining takes
85 minutes of this CPU. The shipped ``online-mle`` bundle already holds the policy's weights (rounded to fp16 at
export, which is what every figure of it was measured on), so they are read back from its ONNX initializers
rather than kept twice in the repository. The graph stores each linear layer transposed and anonymous, in the
order the model runs them (per block: q, kv, out, gate_up, down; then the head), so the order is the mapping;
the recovered model is then checked against the ONNX graph's own logits, and refused if they differ.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .checkpoints import build_model, save_checkpoint
from .data.cache import DataError
from .models.transformer import preset

LINEAR_ORDER = ("attn.q", "attn.kv", "attn.out", "ffn.gate_up", "ffn.down")


def _initializers(onnx_path: Path) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """(named tensors, anonymous 2-D tensors in graph order), fp16 ones widened to fp32."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    named, anonymous = {}, []
    for init in graph.initializer:
        a = numpy_helper.to_array(init).astype(np.float32)
        name = init.name.removesuffix("__fp16")
        if name.startswith("policy."):
            named[name[len("policy."):]] = a
        elif a.ndim == 2:
            anonymous.append(a)
    return named, anonymous


def policy_from_bundle(card_path: Path) -> tuple[torch.nn.Module, dict]:
    """The online policy of a bundle as a torch module, and its checkpoint metadata."""
    card = json.loads(Path(card_path).read_text())
    if card.get("role") != "online_policy":
        raise DataError(f"{card_path}: a {card.get('role')} bundle, not an online policy")
    m = card["model"]
    cfg = preset(m["config_name"], vocab_size=card["vocab_size"])
    if (cfg.n_layer, cfg.n_head, cfg.d_model) != (m["n_layer"], m["n_head"], m["d_model"]):
        raise DataError(f"{card_path}: model {m} does not match the {m['config_name']!r} preset")
    model = build_model("online", cfg)
    named, linears = _initializers(Path(card_path).with_suffix(".onnx"))
    state = model.state_dict()
    want = [f"trunk.blocks.{b}.{name}.weight" for b in range(cfg.n_layer) for name in LINEAR_ORDER] + ["lm_head.weight"]
    if len(linears) != len(want):
        raise DataError(f"{card_path}: {len(linears)} linear layers in the graph, the model has {len(want)}")
    new = {}
    for key, weight in zip(want, linears):
        if tuple(weight.T.shape) != tuple(state[key].shape):
            raise DataError(f"{card_path}: graph layer {weight.shape} does not fit {key} {tuple(state[key].shape)}")
        new[key] = torch.from_numpy(weight.T.copy())
    for key in state:
        if key not in new and key in named:
            new[key] = torch.from_numpy(named[key])
    missing = [k for k in state if k not in new and not k.endswith(("rotary.cos", "rotary.sin"))]
    if missing:
        raise DataError(f"{card_path}: no weights in the graph for {', '.join(missing)}")
    model.load_state_dict({**state, **new})
    meta = {"kind": "online", "config_name": m["config_name"], "model_config": asdict(cfg),
            "recovered_from": {"bundle": card["name"], "sha256": card["onnx"]["sha256"]},
            "training": card.get("training", {})}
    return model.eval(), meta


def check_against_graph(model: torch.nn.Module, card_path: Path, tokens: list[int], tol: float = 1e-3) -> float:
    """Max |logit difference| between the recovered model and the bundle's graph on ``tokens``."""
    from app.engine.bundle import load_bundle
    from app.engine.policy import OnnxPolicy

    policy = OnnxPolicy(load_bundle(card_path))
    onnx_logits, _ = policy.run(tokens, policy.empty())
    with torch.no_grad():
        out = model(torch.tensor([tokens]))
    torch_logits = (out[0] if isinstance(out, tuple) else out)[0].float().numpy()
    diff = float(np.abs(torch_logits - onnx_logits).max())
    if diff > tol:
        raise DataError(f"{card_path}: the recovered weights do not reproduce the graph (max logit difference "
                        f"{diff:.3g} > {tol:g})")
    return diff


def recover(card_path: Path, out: Path) -> dict:
    """Write ``out/ckpt_best.pt`` and ``ckpt_last.pt`` (weights only) from a policy bundle, checked."""
    model, meta = policy_from_bundle(card_path)
    rng = np.random.default_rng(0)
    card = json.loads(Path(card_path).read_text())
    bos = int(card["special"]["bos"])
    tokens = [bos] + [int(t) for t in rng.integers(4, card["vocab_size"], 63)]
    diff = check_against_graph(model, card_path, tokens)
    out.mkdir(parents=True, exist_ok=True)
    step = int(meta["training"].get("steps") or 0)
    for which in ("best", "last"):
        save_checkpoint(out / f"ckpt_{which}.pt", model, None, step, meta)
    (out / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "training"}, indent=1))
    return {"out": str(out), "max_logit_diff": diff, "step": step, "bundle": meta["recovered_from"]["bundle"]}
