"""A lead sheet as MusicXML, with music21 (the optional extra ``comper[export]``, imported only here and only when
an export runs): one part, the melody, with the chord symbols as ``harmony`` elements, the meter, the tempo, the
key and the bars.

Chord symbols are built from root and kind, not parsed from their text: music21 reads ``mMaj7`` as no chord at
all and ``m7b5`` as a minor seventh with an added flat fifth. Each quality of the model card's table has its
MusicXML kind (``_KINDS``); ``7sus4``, which MusicXML has no kind for, is a dominant seventh with the fourth added
and the third left out, which readers agree on (an added seventh is read differently by music21 and the
MusicXML standard). The symbol as Comper writes it goes in the kind's ``text``, so readers show ``Bbm7b5`` and not
their own spelling.
"""

from __future__ import annotations

import re
from typing import Any

from ..engine.key import NAMES
from .sheet import LeadSheet, LeadSheetError

INSTALL = "pip install 'comper[export]'"
# card quality suffix -> (music21 chord kind, [(modification, degree, alteration)])
_KINDS: dict[str, tuple[str, list[tuple[str, int, int]]]] = {
    "": ("major", []), "m": ("minor", []), "dim": ("diminished", []), "aug": ("augmented", []),
    "sus2": ("suspended-second", []), "sus4": ("suspended-fourth", []), "7": ("dominant-seventh", []),
    "maj7": ("major-seventh", []), "m7": ("minor-seventh", []), "m7b5": ("half-diminished-seventh", []),
    "dim7": ("diminished-seventh", []), "6": ("major-sixth", []), "m6": ("minor-sixth", []),
    "mMaj7": ("minor-major-seventh", []), "7sus4": ("dominant-seventh", [("add", 4, 0), ("subtract", 3, 0)]),
}
_ROOT = re.compile(r"^([A-G])([b#]?)(.*)$")


def require_music21() -> Any:
    """The music21 module, or ``LeadSheetError`` saying how to install it."""
    try:
        import music21
    except ImportError:
        raise LeadSheetError(f"MusicXML export needs music21, which is not installed: {INSTALL}") from None
    return music21


def split_symbol(symbol: str) -> tuple[str, str]:
    """'Bbm7b5' -> ('Bb', 'm7b5'); ValueError when it does not start with a note name."""
    m = _ROOT.match(symbol)
    if not m:
        raise ValueError(f"chord symbol {symbol!r} does not start with a note name")
    return m.group(1) + m.group(2), m.group(3)


def chord_symbol(symbol: str | None) -> Any:
    """A music21 ``ChordSymbol`` for a Comper chord symbol (``NoChord`` for None)."""
    from music21 import harmony

    if symbol is None:
        return harmony.NoChord()
    root, suffix = split_symbol(symbol)
    m21_root = root[0] + root[1:].replace("b", "-")
    if suffix in _KINDS:
        kind, steps = _KINDS[suffix]
        cs = harmony.ChordSymbol(root=m21_root, kind=kind)
        for mod, degree, alter in steps:
            cs.addChordStepModification(harmony.ChordStepModification(mod, degree, alter))
    else:  # a quality a later vocabulary may add: music21's reading of the figure
        cs = harmony.ChordSymbol(m21_root + suffix)
    cs.chordKindStr = suffix
    return cs


def build_score(sheet: LeadSheet) -> Any:
    """The music21 ``Score`` of ``sheet``."""
    m21 = require_music21()
    from music21 import chord, clef, key, metadata, meter, note, stream, tempo
    from music21.stream.makeNotation import makeAccidentalsInMeasureStream

    tpb = sheet.ticks_per_beat
    part = stream.Part(id="P1")
    part.partName = "Melody"
    pitches = [p for _, _, ps in sheet.melody for p in ps]
    part.insert(0, clef.BassClef() if pitches and sum(pitches) / len(pitches) < 55 else clef.TrebleClef())
    part.insert(0, meter.TimeSignature(f"{sheet.meter[0]}/{sheet.meter[1]}"))
    part.insert(0, key.Key(NAMES[sheet.key.tonic].replace("b", "-"), sheet.key.mode))
    part.insert(0, tempo.MetronomeMark(number=sheet.bpm, referent=note.Note(type="quarter")))
    at = 0
    for on, off, pitches in sheet.melody:
        if on > at:
            part.insert(at / tpb, note.Rest(quarterLength=(on - at) / tpb))
        n = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(list(pitches))
        n.quarterLength = (off - on) / tpb
        for p in n.pitches:  # a pitch from a MIDI number carries a natural, which music21 would then print
            if p.accidental is not None and p.accidental.name == "natural":
                p.accidental = None
        part.insert(on / tpb, n)
        at = off
    end = sheet.n_bars * sheet.bar_ticks
    if end > at:
        part.insert(at / tpb, note.Rest(quarterLength=(end - at) / tpb))
    # Bars, ties over bar lines and inside them, accidentals, beams, made here in one voice: music21's own
    # makeNotation makes a second voice of rests wherever a chord changes under a held note. The chord symbols
    # go in after the accidentals (whose reckoning would count their pitches as notes of the bar).
    part.makeMeasures(inPlace=True)
    part.makeTies(inPlace=True)
    part.splitAtDurations(recurse=True)
    makeAccidentalsInMeasureStream(part)
    part.makeBeams(inPlace=True)
    measures = list(part.getElementsByClass(stream.Measure))
    for tick, symbol in sheet.chords:
        try:
            measures[tick // sheet.bar_ticks].insert(tick % sheet.bar_ticks / tpb, chord_symbol(symbol))
        except (ValueError, m21.Music21Exception) as e:
            sheet.warnings.append(f"chord {symbol!r} at bar {tick // sheet.bar_ticks + 1} left out: {e}")
    score = stream.Score([part])
    score.metadata = metadata.Metadata()
    score.metadata.title = sheet.title
    if sheet.model:
        score.metadata.composer = f"chords: Comper ({sheet.model}" + (f", seed {sheet.seed})" if sheet.seed is not
                                                                       None else ")")
    return score


def musicxml_bytes(sheet: LeadSheet) -> bytes:
    """The MusicXML document (uncompressed, UTF-8) of ``sheet``. A chord that changes under a held note is a
    ``harmony`` with an ``offset`` (MusicXML's way), not a second voice."""
    require_music21()
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    exporter = GeneralObjectExporter(build_score(sheet))
    exporter.makeNotation = False  # done in build_score
    return exporter.parse()
