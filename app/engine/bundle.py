"""Load and validate a model bundle (``<name>.onnx`` + ``<name>.json``): the only thing the app takes from training.

A bundle that cannot be used is refused before anything plays, with one line naming the file and the reason:
missing files, a card that fails its checks (``card.Card``: unreadable JSON, an unknown format version or role, a
field of the wrong type or out of range, a token table out of order), a sha256 that does not match the ONNX file, a
token table that does not match the graph's vocabulary, or weights that give NaN or inf logits (a runner makes one
forward pass on a short prompt when it loads: ``check_forward``). While it runs, every model call goes through
``run_model``: an onnxruntime failure or non-finite logits are a one-line ``BundleError``, never NaN handed on to
the sampler.

A card's ``role`` says which runner takes the graph: ``online_policy`` (``policy.OnnxPolicy``, the chord player;
cards from before roles existed have none and mean this) or ``offline_teacher`` (``teacher.OnnxTeacher``, which
fills the chords of the listen-first intro).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .card import DEFAULT_ROLE, BundleError, Card, names_a_graph


@dataclass(frozen=True)
class Bundle:
    card: Card
    card_path: Path
    onnx_path: Path

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def role(self) -> str:
        return self.card.role

    def require_role(self, role: str) -> None:
        """Refuse a bundle handed to the wrong runner (a teacher cannot play live, a policy cannot fill an intro)."""
        if self.role != role:
            raise BundleError(f"{self.card_path}: an {self.role} bundle cannot be run as an {role}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_bundle(path: str | Path, variant: str = "fp32") -> Bundle:
    """``path``: the card (``.json``), the graph (``.onnx``) or the bundle name without suffix."""
    path = Path(path)
    card_path = path if path.suffix == ".json" else path.with_suffix(".json")
    card = Card.load(card_path)
    entry = card.graph(variant)
    onnx_path = card_path.parent / entry.file
    if not onnx_path.is_file():
        raise BundleError(f"{onnx_path}: ONNX file named by {card_path.name} not found")
    digest = sha256_file(onnx_path)
    if digest != entry.sha256:
        raise BundleError(f"{onnx_path}: sha256 {digest[:12]}... does not match the card's "
                          f"{str(entry.sha256)[:12]}... (file changed or corrupt)")
    return Bundle(card, card_path, onnx_path)


def onnx_session(bundle: Bundle, threads: int = 1):
    """An onnxruntime session with explicit threads and spinning off, so an idle model costs no CPU and never
    starves the audio and MIDI threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(bundle.onnx_path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise BundleError(f"{bundle.onnx_path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from e


def run_model(bundle: Bundle, session, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run`` of a bundle's graph, every output; raises a one-line ``BundleError`` naming the file when
    onnxruntime fails or the first output (the logits) holds NaN or inf: sampling from those raised deep inside
    numpy on the planner's thread, or played nothing at all."""
    try:
        outputs = session.run(None, dict(feeds))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BundleError(f"{bundle.onnx_path}: onnxruntime failed ({first})") from e
    if not np.isfinite(outputs[0]).all():
        raise BundleError(f"{bundle.onnx_path}: the model gave NaN or inf logits")
    return outputs


def check_forward(forward: Callable[[], object]) -> None:
    """Run ``forward`` (one pass on a short prompt) when a runner loads: weights that give NaN or inf with a hash
    that matches (a broken export, a bad fine-tune) are refused now in one line, not found mid-jam."""
    try:
        forward()
    except BundleError as e:
        raise BundleError(f"{e} on a short prompt: refused") from None


def models_dir() -> Path:
    """Where shipped bundles live: $COMPER_MODELS, else the repository's ``models/`` folder."""
    import os

    return Path(os.environ.get("COMPER_MODELS", Path(__file__).resolve().parents[2] / "models"))


def shipped_bundles() -> list[Path]:
    """Every ``*.json`` card in the models folder that names an ONNX file (not yet validated)."""
    return [card for card in sorted(models_dir().glob("*.json")) if names_a_graph(card)]


def shipped_teacher() -> Bundle | None:
    """The first valid offline-teacher bundle in the models folder (the intro fill), or None."""
    for card in shipped_bundles():
        try:
            bundle = load_bundle(card)
        except BundleError:
            continue
        if bundle.role == "offline_teacher":
            return bundle
    return None


DEFAULT_PREFERENCE = ("gapt", "gapt-no-adv", "realchords", "online-mle")  # GAPT first, the rest by test harmony


def default_model() -> str:
    """The model a musician gets without asking: GAPT when shipped, else the best other shipped policy."""
    names = [c.stem for c in shipped_bundles()]
    for name in DEFAULT_PREFERENCE:
        if name in names:
            return name
    for card in shipped_bundles():
        try:
            if load_bundle(card).role == DEFAULT_ROLE:
                return card.stem
        except BundleError:
            continue
    raise BundleError(f"no playable model bundle in {models_dir()}")


def resolve_model(name_or_path: str | None) -> Path:
    """A bundle by shipped name (``gapt``) or by path (``models/gapt.json``, ``x.onnx``); None: the default."""
    if name_or_path is None:
        name_or_path = default_model()
    p = Path(name_or_path)
    if p.suffix in (".json", ".onnx") or p.exists():
        return p.with_suffix(".json")
    card = models_dir() / f"{name_or_path}.json"
    if card.exists():
        return card
    names = ", ".join(c.stem for c in shipped_bundles()) or "none"
    raise BundleError(f"no model named {name_or_path!r} in {models_dir()} (shipped: {names})")
