"""The token table of a model card, parsed once: typed tokens, the special ids and the lookups the engine needs.

The card (``card.Card``) hands its ``tokens`` to ``Vocabulary.from_table``; the grammar (``grammar.Grammar``), the
planner, the steering priors and the performer all read that one parsed ``Vocabulary``. Training code builds the
same object from its own table (``training.data.tokens.token_table()``), so the app and training share one
reading of it.

Two levels of checking:

- ``Vocabulary`` itself holds any table that is *self-consistent* (ids 0..n-1 in table order, every field of the
  right type and range, each special token once, every onset with its hold and the same chord facts on both). The
  grammar works with any such table, whatever its order.
- ``check_layout`` checks the *format-1 layout* the shipped graphs were trained on (``PAD, BOS, EOS, SILENCE``,
  then ``NOTE_HOLD(p)`` and ``NOTE_ON(p)`` for p in 0..127, then ``CHORD_HOLD(c)`` and ``CHORD_ON(c)`` for every
  chord, chord ``c`` being root ``c // Q`` and quality ``c % Q``): a reordered table would play the wrong music
  with no error, so a card is refused when its table differs from that layout.

Every problem is a ``VocabularyError`` whose ``field`` says where (``tokens[300].chord``) and ``problem`` what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SPECIAL_KINDS = ("pad", "bos", "eos", "silence")
NOTE_KINDS = ("note_on", "note_hold")
CHORD_KINDS = ("chord_on", "chord_hold")
KINDS = SPECIAL_KINDS + NOTE_KINDS + CHORD_KINDS
N_PITCHES = 128


class VocabularyError(ValueError):
    """A token table the app cannot use: ``field`` says where, ``problem`` what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int(d: dict, key: str, where: str, lo: int, hi: int) -> int:
    x = d.get(key)
    if not is_int(x):
        raise VocabularyError(f"{where}.{key}", f"expected an integer, got {shown(x)}")
    if not lo <= x <= hi:
        raise VocabularyError(f"{where}.{key}", f"{x} is outside {lo}..{hi}")
    return x


def shown(x: object) -> str:
    """A value as an error line shows it: short, and its JSON type when it is not a plain scalar."""
    if x is None:
        return "nothing"
    if isinstance(x, (dict, list)):
        return f"{'an object' if isinstance(x, dict) else 'a list'} of {len(x)}"
    text = repr(x)
    return f"{type(x).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


@dataclass(frozen=True)
class Quality:
    """A chord quality of the card's ``chord_qualities`` table (its order fixes the chord indices)."""

    name: str
    intervals: tuple[int, ...]
    suffix: str

    def to_dict(self) -> dict:
        return {"name": self.name, "intervals": list(self.intervals), "suffix": self.suffix}

    @classmethod
    def from_dict(cls, d: object, where: str) -> Quality:
        if not isinstance(d, dict):
            raise VocabularyError(where, f"expected an object, got {shown(d)}")
        name, suffix, intervals = d.get("name"), d.get("suffix"), d.get("intervals")
        if not isinstance(name, str) or not name:
            raise VocabularyError(f"{where}.name", f"expected a name, got {shown(name)}")
        if not isinstance(suffix, str):
            raise VocabularyError(f"{where}.suffix", f"expected a string, got {shown(suffix)}")
        if (not isinstance(intervals, list) or not intervals
                or not all(is_int(i) and 0 <= i < 12 for i in intervals)):
            raise VocabularyError(f"{where}.intervals", f"expected a list of semitones 0..11, got {shown(intervals)}")
        return cls(name, tuple(intervals), suffix)


@dataclass(frozen=True)
class Token:
    """One entry of the token table. Notes carry ``pitch``; chords carry ``chord`` (the chord's index in the
    vocabulary), ``root`` (pitch class), ``quality``, ``symbol`` and ``pitch_classes``."""

    id: int
    kind: str
    pitch: int | None = None
    chord: int | None = None
    root: int | None = None
    quality: str | None = None
    symbol: str | None = None
    pitch_classes: tuple[int, ...] = ()

    @property
    def is_chord(self) -> bool:
        return self.kind in CHORD_KINDS

    @property
    def is_note(self) -> bool:
        return self.kind in NOTE_KINDS

    @property
    def is_onset(self) -> bool:
        return self.kind in ("chord_on", "note_on")

    def to_dict(self) -> dict:
        d: dict = {"id": self.id, "kind": self.kind}
        if self.is_note:
            d["pitch"] = self.pitch
        elif self.is_chord:
            d.update(chord=self.chord, root=self.root, quality=self.quality, symbol=self.symbol,
                     pitch_classes=list(self.pitch_classes))
        return d

    @classmethod
    def from_dict(cls, d: object, where: str) -> Token:
        """One table entry as JSON gives it; raises ``VocabularyError`` naming the entry and field."""
        if not isinstance(d, dict):
            raise VocabularyError(where, f"expected a token object, got {shown(d)}")
        tid = d.get("id")
        if not is_int(tid):
            raise VocabularyError(f"{where}.id", f"expected an integer, got {shown(tid)}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise VocabularyError(f"{where}.kind", f"{shown(kind)} is not one of {', '.join(KINDS)}")
        if kind in NOTE_KINDS:
            return cls(tid, kind, pitch=_int(d, "pitch", where, 0, N_PITCHES - 1))
        if kind in SPECIAL_KINDS:
            return cls(tid, kind)
        chord = _int(d, "chord", where, 0, 1 << 20)
        root = _int(d, "root", where, 0, 11)
        quality, symbol, pcs = d.get("quality"), d.get("symbol"), d.get("pitch_classes")
        if not isinstance(quality, str) or not quality:
            raise VocabularyError(f"{where}.quality", f"expected a quality name, got {shown(quality)}")
        if not isinstance(symbol, str) or not symbol:
            raise VocabularyError(f"{where}.symbol", f"expected a chord symbol, got {shown(symbol)}")
        if (not isinstance(pcs, list) or not pcs or not all(is_int(p) and 0 <= p < 12 for p in pcs)
                or len(set(pcs)) != len(pcs)):
            raise VocabularyError(f"{where}.pitch_classes",
                                  f"expected a list of distinct pitch classes 0..11, got {shown(pcs)}")
        return cls(tid, kind, chord=chord, root=root, quality=quality, symbol=symbol, pitch_classes=tuple(pcs))


class Vocabulary:
    """A self-consistent token table and the lookups the engine needs (token ids, chord facts, melody tokens).

    Immutable once built; ``from_table`` reads the JSON form, ``to_table`` writes it back unchanged.
    """

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens: tuple[Token, ...] = tuple(tokens)
        if not self.tokens:
            raise VocabularyError("tokens", "the token table is empty")
        for i, t in enumerate(self.tokens):
            if t.id != i:
                raise VocabularyError(f"tokens[{i}].id", f"{t.id}, expected {i} (ids run 0..n-1 in table order)")
        special: dict[str, int] = {}
        self.note_on: dict[int, int] = {}  # pitch -> token id
        self.note_hold: dict[int, int] = {}
        self.chord_on_of: dict[int, int] = {}  # chord index -> token id
        self.chord_hold_of: dict[int, int] = {}
        self.chord_info: dict[int, Token] = {}  # token id -> the chord token
        by_kind = {"note_on": self.note_on, "note_hold": self.note_hold, "chord_on": self.chord_on_of,
                   "chord_hold": self.chord_hold_of}
        for t in self.tokens:
            if t.kind in SPECIAL_KINDS:
                if t.kind in special:
                    raise VocabularyError(f"tokens[{t.id}].kind", f"a second {t.kind} token "
                                                                  f"(the first is token {special[t.kind]})")
                special[t.kind] = t.id
                continue
            key = t.pitch if t.is_note else t.chord
            table = by_kind[t.kind]
            if key in table:
                what = "pitch" if t.is_note else "chord"
                raise VocabularyError(f"tokens[{t.id}].{what}", f"a second {t.kind} of {what} {key} "
                                                                f"(the first is token {table[key]})")
            table[key] = t.id
            if t.is_chord:
                self.chord_info[t.id] = t
        missing = [k for k in SPECIAL_KINDS if k not in special]
        if missing:
            raise VocabularyError("tokens", f"no {', '.join(missing)} token")
        self.pad, self.bos, self.eos, self.silence = (special[k] for k in SPECIAL_KINDS)
        for onset, hold, what in ((self.note_on, self.note_hold, "pitch"), (self.chord_on_of, self.chord_hold_of,
                                                                          "chord")):
            for key in set(onset) ^ set(hold):
                tid = onset.get(key, hold.get(key))
                raise VocabularyError(f"tokens[{tid}].{what}", f"{what} {key} has "
                                      f"{'an onset but no hold' if key in onset else 'a hold but no onset'} token")
        for c, on in self.chord_on_of.items():
            a, b = self.tokens[on], self.tokens[self.chord_hold_of[c]]
            if (a.root, a.quality, a.symbol, a.pitch_classes) != (b.root, b.quality, b.symbol, b.pitch_classes):
                raise VocabularyError(f"tokens[{b.id}]", f"chord {c}'s hold is {b.symbol} {list(b.pitch_classes)}, "
                                                         f"its onset {a.symbol} {list(a.pitch_classes)}: not one "
                                                         f"chord vocabulary")
        if not self.chord_on_of:
            raise VocabularyError("tokens", "no chord tokens")
        self.pitch_of = {i: p for p, i in (*self.note_on.items(), *self.note_hold.items())}

    @classmethod
    def from_table(cls, table: object) -> Vocabulary:
        """The JSON token table (a list of token objects); raises ``VocabularyError``."""
        if not isinstance(table, list):
            raise VocabularyError("tokens", f"expected a list of token objects, got {shown(table)}")
        return cls([Token.from_dict(t, f"tokens[{i}]") for i, t in enumerate(table)])

    def to_table(self) -> list[dict]:
        return [t.to_dict() for t in self.tokens]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def special(self) -> dict[str, int]:
        return {"pad": self.pad, "bos": self.bos, "eos": self.eos, "silence": self.silence}

    @property
    def n_chords(self) -> int:
        return 1 + max(self.chord_on_of)

    # --- what the planner and the performer ask -----------------------------------------------------------------

    def hold(self, tok: int) -> int:
        """The token that keeps ``tok``'s chord sounding one more frame (silence stays silence)."""
        info = self.chord_info.get(tok)
        return self.chord_hold_of[info.chord] if info else self.silence

    def melody_token(self, pitch: int, onset: bool, previous_pitch: int) -> int:
        if pitch < 0:
            return self.silence
        return self.note_on[pitch] if onset or pitch != previous_pitch else self.note_hold[pitch]

    def fix_holds(self, previous: int, melody: list[int]) -> list[int]:
        """Melody tokens made grammatical after ``previous``: a hold of a note that is not sounding becomes its
        onset (an imagined continuation carried over after the player did something else)."""
        out = []
        for tok in melody:
            pitch = self.pitch_of.get(tok)
            if pitch is not None and tok == self.note_hold[pitch] and self.pitch_of.get(previous) != pitch:
                tok = self.note_on[pitch]
            out.append(tok)
            previous = tok
        return out

    def is_onset(self, tok: int) -> bool:
        info = self.chord_info.get(tok)
        return info is not None and info.kind == "chord_on"

    def as_onset(self, tok: int) -> int:
        """A chord or note hold at the start of a (re-prefilled) window becomes its onset."""
        if tok in self.chord_info:
            return self.chord_on_of[self.chord_info[tok].chord]
        pitch = self.pitch_of.get(tok)
        if pitch is not None and self.note_hold[pitch] == tok:
            return self.note_on[pitch]
        return tok


def check_layout(vocab: Vocabulary, qualities: Sequence[Quality] | None = None) -> None:
    """Raise ``VocabularyError`` unless ``vocab`` is laid out as format 1 lays it out (module docstring), with the
    chords' facts following from their index (and from ``qualities``, the card's quality table, when given)."""
    expected: list[tuple[str, int | None]] = [(k, None) for k in SPECIAL_KINDS]
    expected += [(k, p) for k in ("note_hold", "note_on") for p in range(N_PITCHES)]
    n_chords = (len(vocab) - len(expected)) // 2
    expected += [(k, c) for k in ("chord_hold", "chord_on") for c in range(n_chords)]
    if len(vocab) != len(expected) or n_chords % 12 or n_chords == 0:
        raise VocabularyError("tokens", f"{len(vocab)} tokens: format 1 has 4 special, {2 * N_PITCHES} note and "
                                        f"2 x 12 x (number of qualities) chord tokens")
    for t, (kind, key) in zip(vocab.tokens, expected):
        got = t.pitch if t.is_note else t.chord if t.is_chord else None
        if (t.kind, got) != (kind, key):
            has = t.kind + (f" of {'pitch' if t.is_note else 'chord'} {got}" if got is not None else "")
            wants = kind + (f" of {'pitch' if kind in NOTE_KINDS else 'chord'} {key}" if key is not None else "")
            raise VocabularyError(f"tokens[{t.id}]", f"{has} where format 1 has {wants} (a reordered token table)")
    n_q = n_chords // 12
    if qualities is not None and len(qualities) != n_q:
        raise VocabularyError("chord_qualities", f"{len(qualities)} qualities, but the token table has {n_q}")
    first = {c % n_q: vocab.chord_info[vocab.chord_on_of[c]] for c in range(n_q)}  # each quality on root C
    for t in vocab.chord_info.values():
        q, base = t.chord % n_q, first[t.chord % n_q]
        name = qualities[q].name if qualities is not None else base.quality
        if qualities is not None:
            pcs = tuple(sorted({(t.root + i) % 12 for i in qualities[q].intervals}))
        else:
            pcs = tuple(sorted((p + t.root) % 12 for p in base.pitch_classes))
        if t.root != t.chord // n_q:
            raise VocabularyError(f"tokens[{t.id}].root", f"{t.root}, but chord {t.chord} has root {t.chord // n_q} "
                                                          f"in format 1 (a reordered token table)")
        if t.quality != name:
            raise VocabularyError(f"tokens[{t.id}].quality", f"{t.quality!r}, but chord {t.chord} is a {name!r} chord "
                                                             f"in format 1 (a reordered token table)")
        if tuple(sorted(t.pitch_classes)) != pcs:
            raise VocabularyError(f"tokens[{t.id}].pitch_classes",
                                  f"{list(t.pitch_classes)}, but {t.symbol} has pitch classes {list(pcs)}")
