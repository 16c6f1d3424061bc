"""The chord vocabulary: 12 roots x one fixed quality table, and the rules that map any spelling onto it.

Why a small table instead of the papers' 2,821 chord names: every chord's pitch classes are known, transposition
is a rotation of the root, and the model never wastes capacity on spellings of the same sound.

Mapping rules (``map_chord``), applied to the chord's pitch content (root + intervals), never to its text:

1. **exact**: the interval set equals a table quality (bass ignored only if it is the root).
2. **inversions**: a slash chord (bass other than the root) maps to its root-position chord; the bass is dropped
   and the span counts as *simplified*.
3. **extensions**: with a third present, 9ths (1, 2, 3 next to a major third), 11ths (5) and, next to a seventh,
   #11 (6 with a perfect fifth), b13 (8 with a perfect fifth) and 13ths (9) are removed; 6/9 keeps the 6. Then the
   rest must match the table (*simplified*).
4. **fallback** for what is still unknown: a third picks the family (major / minor), the fifth (b5, #5) picks
   dim / aug, and a seventh (b7 / maj7) is kept when the table has that combination; a missing fifth is filled in;
   sus chords keep their 2 or 4 (7sus4 when a b7 is present); a bare root + fifth (power chord) or a lone root maps
   to major. Everything in this step is *simplified*.
5. **unmapped**: no root could be read (garbage text). The frames become silence and the stats count the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Quality:
    name: str
    intervals: tuple[int, ...]
    suffix: str  # what follows the root in a readable symbol


# The one quality table. Its order fixes the token ids: do not reorder, only append (bundles record the table).
QUALITIES: tuple[Quality, ...] = (
    Quality("maj", (0, 4, 7), ""),
    Quality("min", (0, 3, 7), "m"),
    Quality("dim", (0, 3, 6), "dim"),
    Quality("aug", (0, 4, 8), "aug"),
    Quality("sus2", (0, 2, 7), "sus2"),
    Quality("sus4", (0, 5, 7), "sus4"),
    Quality("7", (0, 4, 7, 10), "7"),
    Quality("maj7", (0, 4, 7, 11), "maj7"),
    Quality("m7", (0, 3, 7, 10), "m7"),
    Quality("m7b5", (0, 3, 6, 10), "m7b5"),
    Quality("dim7", (0, 3, 6, 9), "dim7"),
    Quality("6", (0, 4, 7, 9), "6"),
    Quality("m6", (0, 3, 7, 9), "m6"),
    Quality("mMaj7", (0, 3, 7, 11), "mMaj7"),
    Quality("7sus4", (0, 5, 7, 10), "7sus4"),
)
N_QUALITIES = len(QUALITIES)
N_CHORDS = 12 * N_QUALITIES
QUALITY_INDEX = {q.name: i for i, q in enumerate(QUALITIES)}
_BY_SET = {frozenset(q.intervals): i for i, q in enumerate(QUALITIES)}

PITCH_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


class Mapping(str, Enum):
    EXACT = "exact"
    SIMPLIFIED = "simplified"
    UNMAPPED = "unmapped"


@dataclass(frozen=True)
class Chord:
    """A vocabulary chord; ``index = root * N_QUALITIES + quality``."""

    root: int
    quality: int

    @property
    def index(self) -> int:
        return self.root * N_QUALITIES + self.quality

    @classmethod
    def from_index(cls, index: int) -> Chord:
        return cls(index // N_QUALITIES, index % N_QUALITIES)

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple(sorted((self.root + i) % 12 for i in QUALITIES[self.quality].intervals))

    @property
    def symbol(self) -> str:
        return PITCH_NAMES[self.root] + QUALITIES[self.quality].suffix

    def transpose(self, semitones: int) -> Chord:
        return Chord((self.root + semitones) % 12, self.quality)


def chord_from_symbol(symbol: str) -> Chord:
    """Inverse of ``Chord.symbol`` (tests and the CLI use it)."""
    for root in range(12):
        name = PITCH_NAMES[root]
        if symbol.startswith(name):
            suffix = symbol[len(name):]
            for qi, q in enumerate(QUALITIES):
                if q.suffix == suffix and (len(name) == 2 or not suffix.startswith("b")):
                    return Chord(root, qi)
    raise ValueError(f"not a vocabulary chord symbol: {symbol!r}")


@dataclass(frozen=True)
class ChordMapping:
    chord: Chord | None
    kind: Mapping


def _match(s: frozenset[int]) -> int | None:
    return _BY_SET.get(s)


def _strip_tensions(s: set[int]) -> set[int]:
    has_maj3, has_min3 = 4 in s, 3 in s
    has_third = has_maj3 or has_min3
    has_seventh = 10 in s or 11 in s
    out = set(s)
    if has_third:
        out -= {1, 2, 5}
        if has_maj3 and has_min3:  # #9 spelled as a minor third next to a major one
            out.discard(3)
        if 7 in s:
            out.discard(6)  # #11
            out.discard(8)  # b13
        if has_seventh:
            out.discard(9)  # 13
    return out


def _fallback(s: set[int]) -> int:
    seventh = 10 if 10 in s else (11 if 11 in s else None)
    if 4 in s or 3 in s:
        minor = 3 in s and 4 not in s
        fifth = 7 if 7 in s else (6 if (6 in s and minor) else (8 if (8 in s and not minor) else 7))
        candidates = [{0, 3 if minor else 4, fifth} | ({seventh} if seventh is not None else set()),
                      {0, 3 if minor else 4, 7} | ({seventh} if seventh is not None else set()),
                      {0, 3 if minor else 4, fifth},
                      {0, 3 if minor else 4, 7}]
        if 9 in s and seventh is None:
            candidates.insert(0, {0, 3 if minor else 4, 7, 9})
        for cand in candidates:
            q = _match(frozenset(cand))
            if q is not None:
                return q
    if 5 in s:
        return QUALITY_INDEX["7sus4"] if 10 in s else QUALITY_INDEX["sus4"]
    if 2 in s:
        return QUALITY_INDEX["sus2"]
    if s <= {0, 6, 9} and 6 in s:  # diminished shell without a third
        return QUALITY_INDEX["dim7"] if 9 in s else QUALITY_INDEX["dim"]
    if seventh == 10:
        return QUALITY_INDEX["7"]
    if seventh == 11:
        return QUALITY_INDEX["maj7"]
    if 8 in s:
        return QUALITY_INDEX["aug"]
    return QUALITY_INDEX["maj"]  # power chord (0, 7) or a lone root


def map_chord(root: int | None, intervals: tuple[int, ...] | list[int], bass: int | None = None) -> ChordMapping:
    """Map a chord's pitch content onto the vocabulary (rules in the module docstring)."""
    if root is None:
        return ChordMapping(None, Mapping.UNMAPPED)
    root %= 12
    s = {i % 12 for i in intervals} | {0}
    inverted = bass is not None and bass % 12 != root
    q = _match(frozenset(s))
    if q is not None:
        return ChordMapping(Chord(root, q), Mapping.SIMPLIFIED if inverted else Mapping.EXACT)
    q = _match(frozenset(_strip_tensions(s)))
    if q is None:
        q = _fallback(_strip_tensions(s))
    return ChordMapping(Chord(root, q), Mapping.SIMPLIFIED)


# --- text spellings -------------------------------------------------------------------------------------------

# Suffix -> intervals for the common chord-symbol text spellings (lead sheets, ABC, fake books).
_SUFFIX_INTERVALS: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7), "maj": (0, 4, 7), "M": (0, 4, 7),
    "m": (0, 3, 7), "min": (0, 3, 7), "mi": (0, 3, 7), "-": (0, 3, 7),
    "dim": (0, 3, 6), "d": (0, 3, 6), "o": (0, 3, 6), "°": (0, 3, 6),
    "aug": (0, 4, 8), "a": (0, 4, 8), "+": (0, 4, 8), "+5": (0, 4, 8), "#5": (0, 4, 8),
    "sus2": (0, 2, 7), "sus4": (0, 5, 7), "sus": (0, 5, 7),
    "7": (0, 4, 7, 10), "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11), "M7": (0, 4, 7, 11), "ma7": (0, 4, 7, 11), "j7": (0, 4, 7, 11), "Δ": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10), "min7": (0, 3, 7, 10), "mi7": (0, 3, 7, 10), "-7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10), "ø": (0, 3, 6, 10), "ø7": (0, 3, 6, 10), "m7-5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9), "d7": (0, 3, 6, 9), "o7": (0, 3, 6, 9), "°7": (0, 3, 6, 9),
    "6": (0, 4, 7, 9), "maj6": (0, 4, 7, 9), "m6": (0, 3, 7, 9), "min6": (0, 3, 7, 9),
    "mmaj7": (0, 3, 7, 11), "mMaj7": (0, 3, 7, 11), "mM7": (0, 3, 7, 11), "minmaj7": (0, 3, 7, 11),
    "7sus4": (0, 5, 7, 10), "7sus": (0, 5, 7, 10), "sus47": (0, 5, 7, 10),
    "9": (0, 4, 7, 10, 2), "maj9": (0, 4, 7, 11, 2), "m9": (0, 3, 7, 10, 2), "add9": (0, 4, 7, 2),
    "madd9": (0, 3, 7, 2), "69": (0, 4, 7, 9, 2), "6/9": (0, 4, 7, 9, 2),
    "11": (0, 4, 7, 10, 2, 5), "m11": (0, 3, 7, 10, 2, 5), "13": (0, 4, 7, 10, 2, 9),
    "7b9": (0, 4, 7, 10, 1), "7#9": (0, 4, 7, 10, 3), "7b5": (0, 4, 6, 10), "7#5": (0, 4, 8, 10),
    "aug7": (0, 4, 8, 10), "+7": (0, 4, 8, 10), "a7": (0, 4, 8, 10),
    "5": (0, 7), "m7#5": (0, 3, 8, 10), "dm7": (0, 3, 6, 10),
}
_ROOT_RE = re.compile(r"^([A-Ga-g])([#b+\-]*)")


def parse_pitch_class(text: str) -> int:
    """'F#', 'Bb', 'f+' (ABC cleaned bass: lower case, '+' sharp, 'b'/'-' flat) -> pitch class."""
    m = _ROOT_RE.match(text)
    if not m or m.end() != len(text):
        raise ValueError(f"not a note name: {text!r}")
    pc = _LETTER_PC[m.group(1).upper()]
    for acc in m.group(2):
        pc += 1 if acc in "#+" else -1
    return pc % 12


def parse_chord_text(text: str) -> tuple[int | None, tuple[int, ...], int | None]:
    """Parse a chord-symbol string ('Gm7', 'D/F#', 'Gd', 'Ea', '(E7)') -> (root, intervals, bass).

    Returns root None for 'N', 'N.C.', 'NC'; raises ValueError for text it cannot read.
    """
    t = text.strip().strip("()").strip()
    if t.upper() in {"N", "NC", "N.C.", "N.C", "X", ""}:
        return None, (), None
    bass = None
    if "/" in t and not t.endswith("6/9"):
        t, bass_text = t.rsplit("/", 1)
        bass = parse_pitch_class(bass_text)
    m = re.match(r"^([A-G])([#b]?)", t)
    if not m:
        raise ValueError(f"unreadable chord symbol: {text!r}")
    root = (_LETTER_PC[m.group(1)] + (1 if m.group(2) == "#" else -1 if m.group(2) == "b" else 0)) % 12
    suffix = t[m.end():]
    if suffix not in _SUFFIX_INTERVALS:
        raise ValueError(f"unknown chord quality {suffix!r} in {text!r}")
    return root, _SUFFIX_INTERVALS[suffix], bass


# Harte-style qualities as in POP909's chord_midi.txt ("C:maj", "Bb:min7", "A:maj/3", "C:sus4(b7)").
HARTE_QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8), "sus2": (0, 2, 7), "sus4": (0, 5, 7),
    "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "hdim7": (0, 3, 6, 10), "dim7": (0, 3, 6, 9),
    "maj6": (0, 4, 7, 9), "min6": (0, 3, 7, 9), "minmaj7": (0, 3, 7, 11), "sus4(b7)": (0, 5, 7, 10),
    "9": (0, 4, 7, 10, 2), "maj9": (0, 4, 7, 11, 2), "min9": (0, 3, 7, 10, 2), "5": (0, 7), "1": (0,),
}
_DEGREE_SEMITONES = {"1": 0, "2": 2, "3": 4, "4": 5, "5": 7, "6": 9, "7": 11, "9": 14, "11": 17, "13": 21}


def parse_degree(degree: str) -> int:
    """Harte scale degree ('b7', '3', '#5') -> semitones above the root."""
    m = re.match(r"^([b#]*)(\d+)$", degree)
    if not m or m.group(2) not in _DEGREE_SEMITONES:
        raise ValueError(f"unreadable scale degree: {degree!r}")
    return _DEGREE_SEMITONES[m.group(2)] + m.group(1).count("#") - m.group(1).count("b")


def parse_harte(label: str) -> tuple[int | None, tuple[int, ...], int | None]:
    """'A:maj/3' -> (9, (0, 4, 7), 1). 'N' -> (None, (), None)."""
    label = label.strip()
    if label in {"N", "X", ""}:
        return None, (), None
    root_text, _, rest = label.partition(":")
    root = parse_pitch_class(root_text)
    quality, _, bass_degree = (rest or "maj").partition("/")
    if quality not in HARTE_QUALITIES:
        raise ValueError(f"unknown Harte quality {quality!r} in {label!r}")
    bass = (root + parse_degree(bass_degree)) % 12 if bass_degree else None
    return root, HARTE_QUALITIES[quality], bass


def intervals_from_pitch_classes(root: int, pitch_classes: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted({(pc - root) % 12 for pc in pitch_classes} | {0}))
