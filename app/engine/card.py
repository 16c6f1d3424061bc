"""The model card (``<name>.json`` beside ``<name>.onnx``), typed and validated: the one reader of a bundle's card.

``Card.load(path)`` / ``Card.from_dict(d, source)`` check every field the app uses, types and ranges, before
anything runs: the format version and role, ``frames_per_beat`` (the engine plays 4 frames per beat), the context
lengths, the token table (its shape, and the format-1 order the graphs were trained on: ``vocab.check_layout``),
the special token ids against that table, ``vocab_size``, and the ``onnx`` entry (a file name in the card's folder
and its sha256). A card that fails is refused with one ``BundleError`` line naming the card file, the field and
what is wrong. What the app reads is a typed attribute (``card.vocab.bos``, ``card.onnx.sha256``,
``card.context_tokens``, ``card.stage``, ...).

``steering`` (optional) calibrates the engine's decode-time steering to this model: ``change_cost_offset`` nats
are added to whatever change cost the player chose (a preset or the knob), because the presets were chosen on
one model and another may hold its chords longer (every policy shipped since 2026-12-04 does: it needs about 2
nats less to change as often as the songs). ``chosen_on`` says on which split it was chosen. It never acts when
steering is off: the raw policy stays raw.

Training writes its cards with the same type (``training.export``): a ``Card`` is checked when it is built, so a
card that export writes is one the app reads. ``to_dict`` gives the JSON back; fields the app does not read
(training provenance, data licences, evaluation figures, ...) are kept as written (``training``, ``evaluation``,
``meta``). Optional fields added after format 1 shipped have defaults, so every existing card still loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ComperError
from .clock import FRAMES_PER_BEAT
from .vocab import Quality, Vocabulary, VocabularyError, check_layout, is_int, shown

FORMAT_VERSION = 1
SUPPORTED_FORMATS = (1,)
ROLES = ("online_policy", "offline_teacher")
DEFAULT_ROLE = "online_policy"  # cards written before roles existed
INTERLEAVE = {"online_policy": "chord_first", "offline_teacher": "separate"}  # how each role's graph reads tokens
DEFAULT_CONTEXT_FRAMES = 256  # the training window, for cards written before context_frames existed
REQUIRED = ("format_version", "name", "frames_per_beat", "context_tokens", "vocab_size", "special", "tokens", "onnx")
# the order fields are written in; anything else follows
ORDER = ("format_version", "name", "role", "created", "interleave", "frames_per_beat", "context_frames",
         "context_tokens", "vocab_size", "special", "chord_qualities", "tokens", "model", "onnx", "training", "data",
         "evaluation", "steering", "weights", "int8", "int8_greedy_agreement", "description")
_TYPED = {"format_version", "name", "role", "interleave", "frames_per_beat", "context_frames", "context_tokens",
          "vocab_size", "special", "chord_qualities", "tokens", "model", "onnx", "int8", "training", "evaluation",
          "description", "steering"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CHANGE_COST_OFFSET = 8.0  # nats; the change-cost knob itself spans 12


class BundleError(ComperError):
    """A bundle the app refuses; the message names the file and what is wrong."""


class _FieldError(Exception):
    """A field that fails its check; ``Card`` turns it into a ``BundleError`` naming the card file."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


def _obj(x: object, where: str) -> dict:
    if not isinstance(x, dict):
        raise _FieldError(where, f"expected an object, got {shown(x)}")
    return x


def _opt(d: dict, key: str, where: str, kind: str) -> Any:
    """``d[key]`` if present and of JSON type ``kind`` (str, int, number, bool, strings), else None; the wrong
    type is an error."""
    x = d.get(key)
    if x is None:
        return None
    ok = {"str": isinstance(x, str), "int": is_int(x), "bool": isinstance(x, bool),
          "number": is_int(x) or isinstance(x, float),
          "strings": isinstance(x, list) and all(isinstance(s, str) for s in x)}[kind]
    if not ok:
        wanted = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
                  "strings": "a list of strings"}[kind]
        raise _FieldError(f"{where}.{key}" if where else key, f"expected {wanted}, got {shown(x)}")
    return tuple(x) if kind == "strings" else x


def _file_name(x: object, where: str) -> str:
    if not isinstance(x, str) or not x:
        raise _FieldError(where, f"expected the ONNX file's name, got {shown(x)}")
    if "/" in x or "\\" in x or x in (".", "..") or x != x.strip():
        raise _FieldError(where, f"{x!r} is not a file name in the card's folder")
    return x


@dataclass(frozen=True)
class GraphFile:
    """An ONNX file a card names (``onnx``, or the optional ``int8`` variant) and what export measured on it."""

    file: str | None  # a file name in the card's folder; None only for an int8 variant that was not kept
    sha256: str | None = None
    opset: int | None = None
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    max_abs_logit_diff_vs_torch: float | None = None
    same_greedy_chords: bool | None = None  # int8: its greedy chords equal the fp32 graph's
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("file", "sha256", "opset", "inputs", "outputs", "max_abs_logit_diff_vs_torch", "same_greedy_chords")

    def to_dict(self) -> dict:
        d: dict = {"file": self.file}
        for k in self._KEYS[1:]:
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, tuple) else v
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, x: object, where: str, optional_file: bool = False) -> GraphFile:
        d = _obj(x, where)
        if "file" not in d:
            raise _FieldError(f"{where}.file", "missing (the ONNX file's name)")
        file = None if optional_file and d["file"] is None else _file_name(d["file"], f"{where}.file")
        sha = d.get("sha256")
        if file is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
            raise _FieldError(f"{where}.sha256", f"expected the file's sha256 (64 hex digits), got {shown(sha)}")
        return cls(file, sha if isinstance(sha, str) else None, _opt(d, "opset", where, "int"),
                   _opt(d, "inputs", where, "strings"), _opt(d, "outputs", where, "strings"),
                   _opt(d, "max_abs_logit_diff_vs_torch", where, "number"),
                   _opt(d, "same_greedy_chords", where, "bool"),
                   {k: v for k, v in d.items() if k not in cls._KEYS})


@dataclass(frozen=True)
class ModelInfo:
    """What a card says about the network (``model``); the app shows ``parameters``."""

    kind: str | None = None
    n_layer: int | None = None
    n_head: int | None = None
    d_model: int | None = None
    head_dim: int | None = None
    parameters: int | None = None
    config_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("kind", "n_layer", "n_head", "d_model", "head_dim", "parameters", "config_name")

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self._KEYS}, **self.extra}

    @classmethod
    def from_dict(cls, x: object, where: str = "model") -> ModelInfo:
        d = _obj(x, where)
        kinds = ("str", "int", "int", "int", "int", "int", "str")
        values = [_opt(d, k, where, kind) for k, kind in zip(cls._KEYS, kinds)]
        if values[5] is not None and values[5] <= 0:
            raise _FieldError(f"{where}.parameters", f"{values[5]} is not a parameter count")
        return cls(*values, {k: v for k, v in d.items() if k not in cls._KEYS})


@dataclass(frozen=True)
class SteeringCalibration:
    """How this model's steering is calibrated (the card's ``steering``): nats added to the player's change cost,
    and the split they were chosen on."""

    change_cost_offset: float = 0.0
    chosen_on: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("change_cost_offset", "chosen_on")

    def to_dict(self) -> dict:
        d: dict = {"change_cost_offset": self.change_cost_offset}
        if self.chosen_on is not None:
            d["chosen_on"] = self.chosen_on
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, x: object, where: str = "steering") -> SteeringCalibration:
        d = _obj(x, where)
        offset = _opt(d, "change_cost_offset", where, "number")
        offset = 0.0 if offset is None else float(offset)
        if not abs(offset) <= MAX_CHANGE_COST_OFFSET:
            raise _FieldError(f"{where}.change_cost_offset",
                              f"{offset:g} is not between -{MAX_CHANGE_COST_OFFSET:g} and {MAX_CHANGE_COST_OFFSET:g} nats")
        return cls(offset, _opt(d, "chosen_on", where, "str"), {k: v for k, v in d.items() if k not in cls._KEYS})


@dataclass(frozen=True, eq=False)
class Card:
    """A bundle's card. Built by ``load`` / ``from_dict`` (the JSON) or directly (training's export); checked
    either way when it is built (``BundleError`` naming ``source``, or the card's name, and the field)."""

    name: str
    vocab: Vocabulary  # the token table, parsed (``tokens``; ``special`` and ``vocab_size`` follow from it)
    onnx: GraphFile
    context_tokens: int  # the longest token sequence of training (per stream for the teacher)
    role: str = DEFAULT_ROLE
    frames_per_beat: int = FRAMES_PER_BEAT
    context_frames: int = DEFAULT_CONTEXT_FRAMES
    format_version: int = FORMAT_VERSION
    interleave: str | None = None  # chord_first (online policy) or separate (teacher)
    qualities: tuple[Quality, ...] | None = None  # ``chord_qualities``: its order fixes the chord indices
    int8: GraphFile | None = None
    model: ModelInfo | None = None
    description: str | None = None
    steering: SteeringCalibration | None = None  # the engine's steering calibrated to this model
    training: Mapping[str, Any] = field(default_factory=dict)  # provenance; the app reads ``stage`` only
    evaluation: Mapping[str, Any] = field(default_factory=dict)  # figures; the app shows the test split's
    meta: Mapping[str, Any] = field(default_factory=dict)  # every other field, as written (created, data, ...)
    source: Path | None = None  # the card file, for messages

    def __post_init__(self) -> None:
        try:
            self._check()
        except (_FieldError, VocabularyError) as e:
            raise BundleError(f"{self.where}: {e}") from None

    @property
    def where(self) -> str:
        return str(self.source) if self.source is not None else f"card {self.name!r}"

    def _check(self) -> None:
        if self.format_version not in SUPPORTED_FORMATS:
            raise BundleError(f"{self.where}: unknown format_version {self.format_version!r} "
                              f"(this app reads {', '.join(map(str, SUPPORTED_FORMATS))})")
        if self.role not in ROLES:
            raise BundleError(f"{self.where}: unknown role {self.role!r} (this app runs {', '.join(ROLES)})")
        if not isinstance(self.name, str) or not self.name.strip():
            raise _FieldError("name", f"expected the bundle's name, got {shown(self.name)}")
        if self.interleave is not None and self.interleave != INTERLEAVE[self.role]:
            raise _FieldError("interleave", f"{self.interleave!r}, but an {self.role} graph reads "
                                            f"{INTERLEAVE[self.role]!r}")
        if self.frames_per_beat != FRAMES_PER_BEAT:
            raise _FieldError("frames_per_beat", f"{self.frames_per_beat}, but this app plays {FRAMES_PER_BEAT} "
                                                 f"frames per beat (16th notes)")
        if not is_int(self.context_tokens) or self.context_tokens < 4:
            raise _FieldError("context_tokens", f"{self.context_tokens!r} leaves no room for a frame (at least 4)")
        if not is_int(self.context_frames) or self.context_frames < 1:
            raise _FieldError("context_frames", f"{self.context_frames!r} is not a number of frames (at least 1)")
        check_layout(self.vocab, self.qualities)
        if self.onnx.file is None:
            raise _FieldError("onnx.file", "missing (the ONNX file's name)")
        _file_name(self.onnx.file, "onnx.file")
        for key, entry in (("onnx", self.onnx), ("int8", self.int8)):
            if entry is not None and entry.file is not None and not _SHA256.fullmatch(entry.sha256 or ""):
                raise _FieldError(f"{key}.sha256", f"expected the file's sha256 (64 hex digits), "
                                                   f"got {shown(entry.sha256)}")
        _ = (self.stage, self.test_harmony, self.test_vendi)  # the typed reads: a wrong type fails now

    # --- reading -------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Card:
        """The card at ``path``, checked; raises a one-line ``BundleError``."""
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"{path}: model card not found")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{path}: not valid JSON ({e})") from e
        except OSError as e:
            raise BundleError(f"{path}: cannot read it ({e.strerror or e})") from e
        return cls.from_dict(d, path)

    @classmethod
    def from_dict(cls, d: object, source: str | Path | None = None) -> Card:
        """A card from its JSON object; ``source`` names it in messages. Raises a one-line ``BundleError``."""
        where = str(source) if source is not None else "model card"
        source = Path(source) if source is not None else None
        if not isinstance(d, dict):
            raise BundleError(f"{where}: expected a JSON object")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise BundleError(f"{where}: missing field(s) {', '.join(missing)}")
        version = d["format_version"]
        if not is_int(version) or version not in SUPPORTED_FORMATS:
            raise BundleError(f"{where}: unknown format_version {version!r} "
                              f"(this app reads {', '.join(map(str, SUPPORTED_FORMATS))})")
        try:
            kw = cls._fields_from(d)
        except (_FieldError, VocabularyError) as e:
            raise BundleError(f"{where}: {e}") from None
        return cls(**kw, source=source)

    @classmethod
    def _fields_from(cls, d: dict) -> dict:
        role = d.get("role", DEFAULT_ROLE)
        if not isinstance(role, str):
            raise _FieldError("role", f"expected a role name, got {shown(role)}")
        for key in ("frames_per_beat", "context_tokens", "vocab_size") + (
                ("context_frames",) if "context_frames" in d else ()):
            if not is_int(d[key]):
                raise _FieldError(key, f"expected an integer, got {shown(d[key])}")
        vocab = Vocabulary.from_table(d["tokens"])
        if d["vocab_size"] != len(vocab):
            raise _FieldError("vocab_size", f"{d['vocab_size']}, but the token table has {len(vocab)} tokens")
        special = _obj(d["special"], "special")
        missing = [k for k in vocab.special if k not in special]
        if missing:
            raise _FieldError("special", f"missing {', '.join(missing)} (the ids of the table's special tokens)")
        for k, tid in vocab.special.items():
            if special[k] != tid or not is_int(special[k]):
                said = (f"token {special[k]} is a {vocab.tokens[special[k]].kind} token"
                        if is_int(special[k]) and 0 <= special[k] < len(vocab) else f"{shown(special[k])}")
                raise _FieldError(f"special.{k}", f"{special[k]!r}, but the token table's {k} is {tid} ({said})")
        qualities = d.get("chord_qualities")
        if qualities is not None:
            if not isinstance(qualities, list):
                raise _FieldError("chord_qualities", f"expected a list of qualities, got {shown(qualities)}")
            qualities = tuple(Quality.from_dict(q, f"chord_qualities[{i}]") for i, q in enumerate(qualities))
        int8 = d.get("int8")
        return dict(
            name=d["name"], vocab=vocab, onnx=GraphFile.from_dict(d["onnx"], "onnx"),
            context_tokens=d["context_tokens"], role=role, frames_per_beat=d["frames_per_beat"],
            context_frames=d.get("context_frames", DEFAULT_CONTEXT_FRAMES), format_version=d["format_version"],
            interleave=_opt(d, "interleave", "", "str"), qualities=qualities,
            int8=None if int8 is None else GraphFile.from_dict(int8, "int8", optional_file=True),
            model=None if d.get("model") is None else ModelInfo.from_dict(d["model"]),
            description=_opt(d, "description", "", "str"),
            steering=None if d.get("steering") is None else SteeringCalibration.from_dict(d["steering"]),
            training=_obj(d.get("training") or {}, "training"),
            evaluation=_obj(d.get("evaluation") or {}, "evaluation"),
            meta={k: v for k, v in d.items() if k not in _TYPED})

    # --- what the app shows --------------------------------------------------------------------------------------

    @property
    def stage(self) -> str | None:
        """The training stage (``mle``, ``rl:gapt``, ...)."""
        return _opt(dict(self.training), "stage", "training", "str")

    def _test_figure(self, key: str) -> float | None:
        test = _obj(self.evaluation.get("test") or {}, "evaluation.test")
        return _opt(test, key, "evaluation.test", "number")

    @property
    def test_harmony(self) -> float | None:
        return self._test_figure("harmony")

    @property
    def test_vendi(self) -> float | None:
        return self._test_figure("vendi")

    @property
    def change_cost_offset(self) -> float:
        """Nats the engine adds to the player's change cost for this model (0: none)."""
        return self.steering.change_cost_offset if self.steering is not None else 0.0

    @property
    def parameters(self) -> int | None:
        return self.model.parameters if self.model is not None else None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def graph(self, variant: str = "fp32") -> GraphFile:
        """The ONNX file of a variant: ``fp32`` (the card's ``onnx``) or ``int8``; BundleError if it has none."""
        if variant == "int8":
            if self.int8 is None or self.int8.file is None:
                raise BundleError(f"{self.where}: no int8 variant in this bundle")
            return self.int8
        return self.onnx

    # --- writing -------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The card as JSON: ``Card.from_dict(card.to_dict())`` gives the same card back."""
        d = {**self.meta, "format_version": self.format_version, "name": self.name, "role": self.role,
             "frames_per_beat": self.frames_per_beat, "context_frames": self.context_frames,
             "context_tokens": self.context_tokens, "vocab_size": len(self.vocab), "special": self.vocab.special,
             "tokens": self.vocab.to_table(), "onnx": self.onnx.to_dict(), "training": dict(self.training),
             "evaluation": dict(self.evaluation)}
        if self.interleave is not None:
            d["interleave"] = self.interleave
        if self.qualities is not None:
            d["chord_qualities"] = [q.to_dict() for q in self.qualities]
        if self.model is not None:
            d["model"] = self.model.to_dict()
        if self.int8 is not None:
            d["int8"] = self.int8.to_dict()
        if self.description is not None:
            d["description"] = self.description
        if self.steering is not None:
            d["steering"] = self.steering.to_dict()
        return {**{k: d[k] for k in ORDER if k in d}, **{k: v for k, v in d.items() if k not in ORDER}}

    def save(self, path: str | Path) -> None:
        """Written whole or not at all (a temporary file, then an atomic replace): a card is never half-written."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @cached_property
    def _json(self) -> dict:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        """The card's JSON field ``key``, for tools outside the app (training, tests); app code reads the typed
        attributes."""
        return self._json[key]

    def __contains__(self, key: str) -> bool:
        return key in self._json

    def get(self, key: str, default: Any = None) -> Any:
        return self._json.get(key, default)


def names_a_graph(path: Path) -> bool:
    """Whether a ``*.json`` file in a models folder is meant as a model card (a JSON object with an ``onnx``
    field), so that it is listed; a file that cannot be read is listed too, to be refused with its reason."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return isinstance(d, dict) and "onnx" in d
