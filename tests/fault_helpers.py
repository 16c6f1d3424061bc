"""Broken models for the planner-fault tests: a bundle whose weights are NaN (its card's sha256 matches, so only
the forward pass can tell), and an onnxruntime session that starts failing mid-jam on demand."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np


def nan_weights_copy(card_path: Path, out_dir: Path, name: str) -> Path:
    """A copy of a bundle with every float weight NaN, re-hashed in its card as the exporter hashes it."""
    import onnx
    from onnx import numpy_helper

    from app.engine.bundle import sha256_file

    out_dir.mkdir(parents=True, exist_ok=True)
    card = json.loads(card_path.read_text())
    model = onnx.load(card_path.parent / card["onnx"]["file"])
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size > 1:
            init.CopyFrom(numpy_helper.from_array(np.full_like(w, np.nan), init.name))
    onnx_path = out_dir / f"{name}.onnx"
    onnx.save(model, onnx_path)
    card.pop("int8", None)
    card.update(name=name, onnx=dict(card["onnx"], file=onnx_path.name, sha256=sha256_file(onnx_path)))
    out = out_dir / f"{name}.json"
    out.write_text(json.dumps(card))
    return out


class FaultySession:
    """Wraps a policy's onnxruntime session; once ``arm()``-ed, every call fails the way ``kind`` says: ``nan``
    (the logits come back NaN) or ``ort`` (onnxruntime itself raises: the tokens are fed as floats)."""

    def __init__(self, real, kind: str) -> None:
        self.real, self.kind = real, kind
        self.armed = threading.Event()

    def arm(self) -> None:
        self.armed.set()

    def run(self, names, feeds):
        if not self.armed.is_set():
            return self.real.run(names, feeds)
        if self.kind == "ort":
            return self.real.run(names, dict(feeds, tokens=np.asarray(feeds["tokens"], np.float32)))
        out = self.real.run(names, feeds)
        return [np.full_like(out[0], np.nan), *out[1:]]

    def __getattr__(self, name):
        return getattr(self.real, name)


def break_policy(policy, kind: str) -> FaultySession:
    """Put a ``FaultySession`` under ``policy`` (not armed yet) and return it."""
    policy.session = FaultySession(policy.session, kind)
    return policy.session
