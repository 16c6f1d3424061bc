"""Nottingham Music Database (jukedeck's cleaned ABC): several tunes per file, chord symbols inline in quotes.

Why the chord text is read here and not by music21: music21's ChordSymbol silently drops the cleaned spellings
it cannot read (``"Gd"`` dim, ``"Ea"`` aug, ``"Fa7"``) and misreads lower-case bass notes (``"D/f+"`` became an
augmented chord). So before music21 sees a tune, every chord annotation is replaced by a harmless ``"C"``
placeholder and its text is kept in a list; after parsing, the placeholders (one ChordSymbol each, in score
order) get their source text back and ``parse_chord_text`` reads it. A count mismatch raises, so a placeholder
music21 dropped can never shift the labels.

Annotation groups: a note may carry two stacked chords, ``"Em""C"`` (first / second time through a repeat) or
``" ""G"`` (no change the first time). Like the MIDI renders, we keep the first one of the group; a blank first
one means no new chord. A parenthesised chord ``"(E7)"`` (an optional chord on a pickup, never stacked on a main
chord in this data) is used as the chord; its label keeps the parentheses.

Bar lines: music21 drops the whole bar after a ``::`` (and mis-expands ``:|:``), so both are rewritten as the
equivalent ``:||:`` first. An end-repeat without a start goes back to the previous double bar (the ABC rule; the
shared reader applies it), not to the top of the tune as music21 would.

Not followed: the ``Y:`` part playing order (e.g. ABAC); parts play in written order with their repeats.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from music21 import converter, harmony, stream

from training.data.chords import parse_chord_text
from training.data.leadsheet import LeadSheet, SkipSong, SongRef
from training.data.sources.music21_score import SOURCE_TEXT, read_score

NAME = "nottingham"

_TUNE_START = re.compile(r"^X:", re.MULTILINE)
_X_NUMBER = re.compile(r"^X:\s*(\d+)", re.MULTILINE)
_FIELD_LINE = re.compile(r"^[A-Za-z]:")  # header / inline field lines (T:, N:"...", K:, P:) carry no chords
_CHORD_GROUP = re.compile(r'(?:"[^"\n]*")+')
_CHORD = re.compile(r'"([^"\n]*)"')
_PLACEHOLDER = '"C"'
_END_START_REPEAT = re.compile(r"(?<![|:]):\|?:(?![|:])")  # "::" or ":|:" (not ":||:")


def split_tunes(text: str) -> list[str]:
    """The tunes of one ABC file, in order: each starts at an ``X:`` line."""
    starts = [m.start() for m in _TUNE_START.finditer(text)]
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def discover(data_dir: Path, workdir: Path) -> list[SongRef]:
    refs: list[SongRef] = []
    for path in sorted((Path(data_dir) / "nottingham" / "ABC_cleaned").glob("*.abc")):
        for i, tune in enumerate(split_tunes(path.read_text(encoding="utf-8", errors="replace"))):
            m = _X_NUMBER.match(tune)
            number = m.group(1) if m else str(i + 1)
            refs.append(SongRef(NAME, f"{path.stem}/{number}", str(path), i))
    return refs


def clean_tune(tune: str) -> tuple[str, list[str]]:
    """Replace each chord annotation group by a placeholder and ``::`` by ``:||:``; return the new text and the
    chord texts in order."""
    texts: list[str] = []

    def replace(m: re.Match[str]) -> str:
        first = "".join(_CHORD.match(m.group(0)).group(1).split())  # "D m" -> "Dm", " Em" -> "Em"
        if not first:
            return ""
        texts.append(first)
        return _PLACEHOLDER

    def clean(line: str) -> str:
        if _FIELD_LINE.match(line) or line.startswith("%"):
            return line
        return _END_START_REPEAT.sub(":||:", _CHORD_GROUP.sub(replace, line))

    lines = [clean(line) for line in tune.splitlines(keepends=True)]
    return "".join(lines), texts


def parse(ref: SongRef) -> LeadSheet:
    tunes = split_tunes(Path(ref.path).read_text(encoding="utf-8", errors="replace"))
    if not 0 <= (ref.part or 0) < len(tunes):
        raise ValueError(f"{ref.path} has {len(tunes)} tunes, no tune #{ref.part}")
    tune, texts = clean_tune(tunes[ref.part or 0])
    if not texts:
        raise SkipSong("no chords")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parseData(tune, format="abc")
    if not isinstance(score, stream.Score):
        raise ValueError(f"music21 did not return one score for {ref.song_id}")
    symbols = list(score.recurse().getElementsByClass(harmony.ChordSymbol))
    if len(symbols) != len(texts):
        raise ValueError(f"{len(texts)} chord annotations but music21 kept {len(symbols)}")
    for cs, text in zip(symbols, texts):
        cs.editorial[SOURCE_TEXT] = text
    content = read_score(score, parse_text=parse_chord_text, repeat_after_double_bar=True)
    return LeadSheet(NAME, ref.song_id, content.notes, content.chords, content.meter, content.key, ref.path,
                     content.extra)
