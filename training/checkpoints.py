"""Checkpoints and mixed precision, shared by every trainer and every reader of a run.

A checkpoint is one ``torch.save`` dict: ``model`` (the state dict), ``optim`` where the run can be resumed, ``step``,
and the run's metadata (``kind``, ``model_config``, ...). It holds only tensors and plain values and loads with
``weights_only=True``, so opening one never runs code. Kept apart from the trainers so that loading a model (export,
evaluation, the reward ensemble) does not import a training loop.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch

from .models.policy import OnlinePolicy
from .models.teacher import OfflineTeacher
from .models.transformer import ModelConfig


def build_model(kind: str, cfg: ModelConfig) -> torch.nn.Module:
    """A fresh chord model of a checkpoint's ``kind``: the offline teacher, else the online policy (or melody agent)."""
    return OfflineTeacher(cfg) if kind == "offline" else OnlinePolicy(cfg)


def pick_device(name: str | None) -> torch.device:
    """The device a stage runs on: ``name`` (cpu, cuda, cuda:1), or CUDA when there is one. A device this machine
    does not have is one line naming the flag, not a traceback from the first tensor moved there."""
    from .data.cache import DataError

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise DataError(f"--device {name}: not a device (cpu, cuda or cuda:N)") from e
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise DataError(f"--device {name}: {have} on this machine (torch {torch.__version__}); use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise DataError(f"--device {name}: only cpu and cuda are supported")
    return dev


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matmuls (AVX512-BF16 / AMX), where bf16 autocast is ~2x faster than fp32
    (measured: a `small` training step 3.0 s -> 1.6 s on this 2-core Xeon); elsewhere bf16 is emulated and slower."""
    return bool(torch.cpu._is_avx512_bf16_supported())


def autocast(device: torch.device):
    """bf16 autocast on GPUs and on CPUs with native bf16; fp32 otherwise. Losses are taken in fp32."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16())


def save_checkpoint(path: Path, model, opt, step: int, meta: dict) -> None:
    """``opt`` None: the weights alone (an RL snapshot), not resumable."""
    raw = model.module if hasattr(model, "module") else model
    tmp = path.with_suffix(".tmp")
    optim = {} if opt is None else {"optim": opt.state_dict()}
    torch.save({"model": raw.state_dict(), **optim, "step": step, **meta}, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint, even when killed mid-save


class BestCheckpoint:
    """``ckpt_best.pt`` of a run kept by validation loss: written when a validation point beats every earlier one.
    The best loss so far also goes into every ``ckpt_last`` (``meta``), so a resumed run keeps comparing with it."""

    def __init__(self, path: Path, value: float = math.inf) -> None:
        self.path, self.value = Path(path), value

    def offer(self, step: int, val: dict, model, opt, meta: dict) -> None:
        if val["val_loss"] < self.value:
            self.value = val["val_loss"]
            save_checkpoint(self.path, model, opt, step, {**meta, "best_val": self.value, "val": val})

    def meta(self, meta: dict) -> dict:
        return {**meta, "best_val": self.value}


def load_checkpoint(path: Path) -> dict:
    """A checkpoint never runs code: only tensors and plain values are accepted."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from e


def load_model(run: Path, which: str = "best") -> tuple[torch.nn.Module, dict]:
    """The model of a run directory and its checkpoint metadata.

    ``which``: ``best`` (by validation loss), ``last``, or ``u<N>``, an RL run's snapshot at validation point N.
    RL runs have no validation loss: ``best`` falls back to ``ckpt_last.pt`` there. ``run`` may also be a checkpoint
    file itself, such as kept weights (``models/weights/offline-teacher.pt``, bf16, widened on load)."""
    if which not in ("best", "last") and not re.fullmatch(r"u\d+", which):
        raise ValueError(f"checkpoint {which!r}: expected best, last or u<N> (an RL snapshot, e.g. u60)")
    path = Path(run) if Path(run).is_file() else Path(run) / f"ckpt_{which}.pt"
    if which == "best" and not path.exists():
        path = Path(run) / "ckpt_last.pt"
    if not path.exists():
        have = sorted(p.stem[len("ckpt_"):] for p in Path(run).glob("ckpt_*.pt"))
        raise FileNotFoundError(f"{path}: no such checkpoint (this run has: {', '.join(have) or 'none'})")
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["kind"], ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), {**ckpt, "file": path.name}
