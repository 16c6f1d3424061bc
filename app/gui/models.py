"""The model picker's data: which bundles can play, how to describe them, and loading them off the GUI thread.

Only ``online_policy`` bundles play; an ``offline_teacher`` bundle (if one is shipped) fills the listen-first
intro's context, picked as ``comper jam`` picks it. Listing reads the cards only (fast); validation (sha256) and
the onnxruntime session happen in ``policy()``, on a background lane, and are cached so switching back is instant.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..engine.bundle import DEFAULT_PREFERENCE, BundleError, load_bundle, shipped_bundles, shipped_teacher
from ..engine.card import Card
from ..engine.policy import OnnxPolicy
from ..engine.teacher import OnnxTeacher


@dataclass(frozen=True)
class ModelEntry:
    path: str  # the card's path: the key the settings remember
    name: str
    description: str
    role: str
    error: str | None = None  # why the card cannot be read (listed, not playable)


def describe(card: Card) -> str:
    """A short line for the picker: the card's own description, else stage and size."""
    if card.description:
        return card.description.splitlines()[0]
    parts = []
    if card.stage:
        parts.append(card.stage.upper())
    if card.parameters:
        parts.append(f"{card.parameters / 1e6:.1f}M parameters")
    return ", ".join(parts) or "no description"


def read_entry(card_path: str | Path) -> ModelEntry:
    p = Path(card_path)
    try:
        card = Card.load(p)
        return ModelEntry(str(p), card.name, describe(card), card.role)
    except BundleError as e:
        return ModelEntry(str(p), p.stem, "unreadable card", "unknown", str(e))


def list_models() -> list[ModelEntry]:
    """Playable (online policy) bundles in the models folder, in name order."""
    return [e for e in map(read_entry, shipped_bundles()) if e.role == "online_policy"]


def default_model(entries: list[ModelEntry]) -> ModelEntry | None:
    """As ``comper jam`` picks (``bundle.default_model``): gapt when shipped, then the engine's other preferred
    names, else the first playable bundle; from the listed entries, so no bundle is hashed on the way."""
    usable = [e for e in entries if e.error is None]
    for name in DEFAULT_PREFERENCE:
        for e in usable:
            if Path(e.path).stem == name:
                return e
    return usable[0] if usable else None


class ModelCache:
    """Loaded policies by card path (thread-safe; loads block the calling, never the GUI, thread)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._policies: dict[str, OnnxPolicy] = {}
        self._teacher: OnnxTeacher | None | bool = False  # False: not looked for yet
        self._lock = threading.Lock()

    def policy(self, path: str) -> OnnxPolicy:
        """The policy of a card (loaded once); raises BundleError with a one-line reason."""
        with self._lock:
            if path not in self._policies:
                self._policies[path] = OnnxPolicy(load_bundle(path), threads=self.threads)
            return self._policies[path]

    def teacher(self) -> OnnxTeacher | None:
        """The first shipped offline teacher, or None (then the intro is just silence as context)."""
        with self._lock:
            if self._teacher is False:
                bundle = shipped_teacher()
                self._teacher = OnnxTeacher(bundle) if bundle else None
            return self._teacher
