"""Shared reader: a parsed music21 Score (one melody part + chord symbols) -> notes, chord spans, meter, key.

Nottingham (ABC), Chord-Melody-Dataset and OpenEWLD (MusicXML) all come out of music21 as the same kind of
Score, so the lead-sheet rules live here once; each source module only fixes its own quirks before calling
``read_score``.

Choices:

* **Repeats** are expanded with music21's ``expandRepeats()``, so the melody and the chords follow the played
  order (first/second endings included). Speed: expanding a full score deep-copies every note (about 40% of the
  parse time), so the notes and chord symbols are first lifted out of each bar and only the empty bars are
  expanded; the played bar order then places the lifted events. music21 raises on repeat structures it cannot
  resolve; then we keep the written order rather than drop the song (the chord/melody alignment stays right,
  only the form is shorter). ``extra["repeats"]`` says which happened ("expanded" / "written").
  music21 sends every end-repeat without a start-repeat back to the top of the piece (``A :| B :|`` plays
  A A B A A B). Notation practice restarts after the previous repeat's last ending (A A B B), and ABC also after
  the previous double bar; ``repair_repeats`` writes those start-repeats in before expanding, and mends two
  malformations that make music21 give up (see there).
* **Times** are quarter-note beats from the start of the (expanded) score. Whole empty bars before the first note
  or chord (e.g. Chord-Melody-Dataset's first bar holding only a ``<forward>``) are cut, bar by bar, so the bar
  grid is kept; a pickup bar stays a pickup: ``extra["pickup"]`` is its length in beats (0.0 for none), so bar
  lines fall at ``pickup + k * bar``.
* **Melody**: tied notes become one note (also across bar lines and repeats), rests and zero-length grace notes
  are skipped, a chord in the melody gives its top pitch, then ``monophonic``.
* **Chords**: each symbol sounds until the next one (``spans_until_next``); N.C. is a span with root None.
  The pitch content comes from music21 (root, pitch classes, bass), except that a slash chord's bass is not
  counted as a chord tone (C/B is C over B, not Cmaj7; chords.py drops the bass of inversions anyway), and an
  added unaltered 7th on a triad or sus chord is the minor seventh (OpenEWLD's "7sus"); a few MusicXML kinds
  music21 cannot build (``augmented-ninth``, ``minor-major``, ``maj69``) get their intervals from a table. A caller
  can pass ``parse_text`` to read the pitch content from the label instead (Nottingham: music21 misreads the
  cleaned spellings), and can give a symbol its source spelling in ``editorial[SOURCE_TEXT]``; otherwise the
  label is music21's figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from music21 import bar, chord, duration, harmony, meter, note, spanner, stream
from music21 import key as m21key

from training.data.chords import intervals_from_pitch_classes
from training.data.leadsheet import ChordSpan, Key, Note, SkipSong, merge_repeated, monophonic, spans_until_next

ChordTextParser = Callable[[str], tuple[int | None, tuple[int, ...], int | None]]

SOURCE_TEXT = "source_text"  # editorial key: the chord's spelling in the source file, when music21 lost it
_BAR_INDEX = "comper_bar_index"  # editorial key: a bar's written index, carried through the repeat expansion
EPS = 1e-6

Event = tuple[float, note.GeneralNote]  # (onset in beats, music21 note / chord / rest / chord symbol)


@dataclass
class ScoreContent:
    notes: list[Note]
    chords: list[ChordSpan]
    meter: tuple[int, int] = (4, 4)
    key: Key | None = None
    extra: dict = field(default_factory=dict)


def melody_part(score: stream.Score) -> stream.Stream:
    parts = list(score.parts)
    return parts[0] if parts else score


def _bar_events(measure: stream.Measure) -> list[Event]:
    events = [(float(measure.elementOffset(el)), el) for el in measure.notesAndRests]
    for voice in measure.voices:
        events += [(float(voice.offset + voice.elementOffset(el)), el) for el in voice.notesAndRests]
    return events


def _lift_bars(part: stream.Stream) -> tuple[list[list[Event]], list[float]]:
    """Take the notes/chord symbols out of each bar (in place), leaving light bars that keep their length."""
    events, lengths = [], []
    for i, measure in enumerate(part.getElementsByClass(stream.Measure)):
        length = float(measure.duration.quarterLength)
        events.append(_bar_events(measure))
        measure.remove(list(measure.notesAndRests) + list(measure.voices))
        measure.duration = duration.Duration(length)
        measure.editorial[_BAR_INDEX] = i
        lengths.append(length)
    return events, lengths


def _is_repeat(barline: bar.Barline | None, direction: str) -> bool:
    return isinstance(barline, bar.Repeat) and barline.direction == direction


def repair_repeats(part: stream.Stream, after_double_bars: bool = False) -> None:
    """Fix the repeat marks music21's expander rejects or misreads, in place:

    * a first ending that stops a bar before its end-repeat (``[1`` on bar 32, ``:|`` after bar 33, ``[2`` on
      bar 34, common in OpenEWLD) is stretched to the end-repeat;
    * a start-repeat that no end-repeat closes is dropped;
    * an end-repeat without a start gets the start it implies: after the previous repeat's last ending or
      (ABC, ``after_double_bars``) after the previous double / final bar.
    """
    bars = list(part.getElementsByClass(stream.Measure))
    index = {id(m): i for i, m in enumerate(bars)}
    brackets = sorted((rb for rb in part.recurse().getElementsByClass(spanner.RepeatBracket)
                       if rb.getSpannedElements()), key=lambda rb: index.get(id(rb.getFirst()), -1))
    in_ending = {index.get(id(m)) for rb in brackets for m in rb.getSpannedElements()}
    for rb, following in zip(brackets, brackets[1:]):
        last, next_start = index.get(id(rb.getLast())), index.get(id(following.getFirst()))
        if last is None or next_start is None or _is_repeat(bars[last].rightBarline, "end"):
            continue
        gap = range(last + 1, next_start)
        if gap and _is_repeat(bars[next_start - 1].rightBarline, "end") and not in_ending.intersection(gap):
            rb.addSpannedElements([bars[j] for j in gap])
            in_ending.update(gap)

    open_start: int | None = None
    for i, m in enumerate(bars):
        if _is_repeat(m.leftBarline, "start"):
            if open_start is not None:
                bars[open_start].leftBarline = None  # never closed
            open_start = i
        if _is_repeat(m.rightBarline, "end"):
            open_start = None
    if open_start is not None:
        bars[open_start].leftBarline = None

    section_start, explicit, after_repeat = 0, False, False
    for i, m in enumerate(bars):
        if after_repeat and i not in in_ending:  # the first bar after a repeat's endings
            section_start, after_repeat = i, False
        if _is_repeat(m.leftBarline, "start"):
            section_start, explicit = i, True
        if _is_repeat(m.rightBarline, "end"):
            if not explicit and section_start > 0:
                bars[section_start].leftBarline = bar.Repeat(direction="start")
            explicit, after_repeat = False, True
        elif (after_double_bars and not explicit and m.rightBarline is not None
              and m.rightBarline.type in ("double", "final") and i + 1 < len(bars)):
            section_start = i + 1


def played_bar_order(score: stream.Score, n_bars: int) -> tuple[list[int], bool]:
    """Written bar indices in played order (repeats expanded), or the written order if music21 cannot expand."""
    try:
        order = [m.editorial[_BAR_INDEX] for m in melody_part(score.expandRepeats()).getElementsByClass(stream.Measure)]
        return order, True
    except Exception:  # noqa: BLE001 - music21 raises several types (ExpanderException, KeyError, ...)
        return list(range(n_bars)), False


def _top_pitch(el: note.GeneralNote) -> int | None:
    if isinstance(el, note.Note):
        return el.pitch.midi
    if isinstance(el, chord.Chord) and el.pitches:
        return max(p.midi for p in el.pitches)
    return None  # rests, unpitched


# MusicXML kinds music21 10.5 leaves as a bare root (OpenEWLD writes them): intervals by hand.
_UNKNOWN_KINDS = {"augmented-ninth": (0, 4, 8, 10, 2), "minor-major": (0, 3, 7, 11), "major-minor": (0, 3, 7, 11),
                  "maj69": (0, 4, 7, 9, 2)}
_NO_SEVENTH_KINDS = {"major", "minor", "augmented", "diminished", "suspended-second", "suspended-fourth", "power"}


def chord_label(h: harmony.ChordSymbol) -> str:
    """The source spelling if the caller kept one, else music21's figure (plus the kind text it dropped)."""
    if h.editorial.get(SOURCE_TEXT):
        return h.editorial[SOURCE_TEXT]
    if h.chordKind in _UNKNOWN_KINDS and h.chordKindStr and not h.figure.endswith(h.chordKindStr):
        return h.figure + h.chordKindStr
    return h.figure


def _chord_content(h: harmony.ChordSymbol) -> tuple[int | None, tuple[int, ...], int | None]:
    if isinstance(h, harmony.NoChord) or h.root() is None or not h.pitches:
        return None, (), None
    root = h.root().pitchClass
    pitches = h.pitches
    mods = h.getChordStepModifications()
    bass = h.bass().pitchClass if h.bass() is not None else root
    if bass != root:  # rebuild without the bass so a non-chord-tone bass does not become a chord tone
        plain = harmony.ChordSymbol(root=h.root().name, kind=h.chordKind)
        for mod in mods:
            plain.addChordStepModification(mod, updatePitches=True)
        if plain.pitches:
            pitches = plain.pitches
    pcs = [p.pitchClass for p in pitches]
    if len(set(pcs)) <= 1 and h.chordKind in _UNKNOWN_KINDS:
        pcs = [(root + i) % 12 for i in _UNKNOWN_KINDS[h.chordKind]]
    added_seventh = any(m.modType == "add" and m.degree == 7 and (m.interval is None or m.interval.semitones == 0)
                        for m in mods)
    if added_seventh and h.chordKind in _NO_SEVENTH_KINDS:
        # "7sus" is written as suspended-fourth + add 7; music21 reads a major seventh, chord symbols mean b7
        pcs = [(root + 10) % 12 if pc == (root + 11) % 12 else pc for pc in pcs]
    return root, intervals_from_pitch_classes(root, pcs), bass


def _key_of(part: stream.Stream) -> Key | None:
    for ks in part.recurse().getElementsByClass(m21key.KeySignature):
        k = ks if isinstance(ks, m21key.Key) else ks.asKey("major")
        return Key(k.tonic.pitchClass, k.mode)
    return None


def _meter_of(part: stream.Stream) -> tuple[int, int]:
    for ts in part.recurse().getElementsByClass(meter.TimeSignature):
        return ts.numerator, ts.denominator
    return 4, 4


def _pickup(part: stream.Stream) -> float:
    first = part.getElementsByClass(stream.Measure).first()
    if first is None:
        return 0.0
    length, full = float(first.duration.quarterLength), float(first.barDuration.quarterLength)
    return length if 0 < length < full - EPS else 0.0


def read_score(score: stream.Score, parse_text: ChordTextParser | None = None,
               repeat_after_double_bar: bool = False) -> ScoreContent:
    """Notes, chord spans, meter and key of a one-part lead-sheet score (rules in the module docstring).

    The score is consumed (its bars are emptied). Raises SkipSong when it has no melody notes or no chords.
    ``repeat_after_double_bar``: ABC's rule, an end-repeat without a start goes back to the last double bar.
    """
    part = melody_part(score)
    meter_, key, pickup = _meter_of(part), _key_of(part), _pickup(part)
    repair_repeats(part, after_double_bars=repeat_after_double_bar)

    bar_events, lengths = _lift_bars(part)
    if bar_events:
        order, expanded = played_bar_order(score, len(bar_events))
    else:  # no bar lines at all: one long "bar"
        bar_events, lengths = [[(float(el.offset), el) for el in part.flatten().notesAndRests]], [part.highestTime]
        order, expanded = [0], False
    starts, t = [], 0.0
    for i in order:
        starts.append(t)
        t += lengths[i]
    end = t

    notes: list[Note] = []
    symbols: list[tuple[float, ChordSpan]] = []
    for start, i in zip(starts, order):
        for offset, el in bar_events[i]:
            onset = start + offset
            if isinstance(el, harmony.ChordSymbol):
                label = chord_label(el)
                root, intervals, bass = parse_text(label) if parse_text else _chord_content(el)
                bass = None if bass is None or root is None or bass % 12 == root else bass % 12
                symbols.append((onset, ChordSpan(onset, onset, label, root, tuple(intervals), bass)))
                continue
            length = float(el.duration.quarterLength)
            pitch = _top_pitch(el)
            if pitch is None or length <= 0 or el.duration.isGrace:
                continue
            prev = notes[-1] if notes else None
            if (el.tie is not None and el.tie.type in ("stop", "continue") and prev is not None
                    and prev.pitch == pitch and abs(prev.offset - onset) < EPS):
                notes[-1] = Note(prev.onset, onset + length, pitch)  # a tied continuation: one longer note
            else:
                notes.append(Note(onset, onset + length, pitch))

    if not notes:
        raise SkipSong("no melody notes")
    if not symbols:
        raise SkipSong("no chords")
    notes = monophonic(notes)
    end = max(end, max(n.offset for n in notes))
    chords = merge_repeated(spans_until_next(symbols, end))

    # Cut whole empty bars at the start, keeping the bar grid.
    first = min(notes[0].onset, chords[0].onset)
    cut = max((s for s in starts if s <= first + EPS), default=0.0)
    if cut > 0:
        notes = [Note(n.onset - cut, n.offset - cut, n.pitch) for n in notes]
        chords = [ChordSpan(c.onset - cut, c.offset - cut, c.label, c.root, c.intervals, c.bass) for c in chords]
        pickup = 0.0  # the song now starts on a bar line
    extra = {"pickup": pickup, "repeats": "expanded" if expanded else "written"}
    return ScoreContent(notes, chords, meter_, key, extra)
