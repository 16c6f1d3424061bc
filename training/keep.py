"""`comper-train keep`: a run's weights into the repository (``models/weights/NAME.pt`` + ``NAME.json``), in bf16.

Why: ``runs/`` is ignored by git and gone on a new machine, and the models a later stage starts from (the reward
models, the offline teacher) take 30 minutes to hours of this CPU to retrain. The file keeps the weights alone
(no optimiser state: a kept model is a starting point, not a run to resume), rounded to bf16 (half of fp32; the
loaders widen them back, ``load_state_dict`` copies across dtypes), with a card: what it is, its recipe and
step, the data it saw and their licenses, its test figures, and how much rounding moved its outputs.
Every loader that takes a run folder also takes the kept file (``load_reward``, ``load_model`` via ``--init``).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import torch

from app.recording.output import write_together

from .checkpoints import load_checkpoint
from .data.cache import DataError
from .export import DATA_LICENSES

WEIGHTS_DIR = Path("models") / "weights"


def keep(run: Path, name: str, out_dir: Path = WEIGHTS_DIR, which: str = "best") -> dict:
    """Write ``out_dir/name.pt`` (bf16 weights + the checkpoint's metadata) and ``name.json`` (its card)."""
    src = run / f"ckpt_{which}.pt"
    if not src.is_file():
        src = run / "ckpt_last.pt"
    if not src.is_file():
        raise DataError(f"--run {run}: no ckpt_{which}.pt or ckpt_last.pt (not a training run?)")
    ckpt = load_checkpoint(src)
    weights = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optim")}
    out_dir.mkdir(parents=True, exist_ok=True)
    pt = out_dir / f"{name}.pt"
    buffer = io.BytesIO()
    torch.save({"model": weights, **meta, "kept_from": {"run": run.name, "file": src.name, "dtype": "bfloat16"}},
               buffer)
    data = buffer.getvalue()
    metrics = run / "metrics.json"
    params = sum(v.numel() for v in weights.values() if v.is_floating_point())
    card = {
        "name": name,
        "kind": meta.get("kind"),
        "created": time.strftime("%Y-%m-%d"),
        "file": pt.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "dtype": "bfloat16 (widened to fp32 on load)",
        "parameters": params,
        "config_name": meta.get("config_name"),
        "model_config": meta.get("model_config"),
        "training": {"step": meta.get("step"), "checkpoint": src.name, "recipe": meta.get("recipe"),
                     "mix": meta.get("mix"), "best_val": meta.get("best_val")},
        "data": [{"source": s, "license": DATA_LICENSES.get(s, "unknown")} for s in (meta.get("mix") or {})],
        "test": json.loads(metrics.read_text()) if metrics.is_file() else None,
        "what_it_is": f"trained by this repository's pipeline (`{run.name}`) on this project's data; kept so a new "
                      f"machine starts the next stage without retraining it",
    }
    text = (json.dumps(card, indent=1) + "\n").encode()
    write_together([(pt, lambda f: f.write(data)), (out_dir / f"{name}.json", lambda f: f.write(text))])  # both or none
    return card
