"""The token table shared by every model, and the table written into each model bundle's card.

Layout (the reference implementation's, with our chord vocabulary in place of 2,821 chord names):
``PAD=0, BOS=1, EOS=2, SILENCE=3``, then ``NOTE_HOLD(p)`` and ``NOTE_ON(p)`` for p in 0..127, then
``CHORD_HOLD(c)`` and ``CHORD_ON(c)`` for every vocabulary chord. One SILENCE token serves both parts: the slot
(chord or melody) is known from the position in the interleaved stream.
"""

from __future__ import annotations

from .chords import N_CHORDS, QUALITIES, Chord

PAD, BOS, EOS, SILENCE = 0, 1, 2, 3
N_PITCHES = 128
NOTE_HOLD = 4
NOTE_ON = NOTE_HOLD + N_PITCHES
CHORD_HOLD = NOTE_ON + N_PITCHES
CHORD_ON = CHORD_HOLD + N_CHORDS
VOCAB_SIZE = CHORD_ON + N_CHORDS


def is_note(tok: int) -> bool:
    return NOTE_HOLD <= tok < CHORD_HOLD


def is_chord(tok: int) -> bool:
    return CHORD_HOLD <= tok < VOCAB_SIZE


def describe(tok: int) -> str:
    """A readable name for one token (logs, tests, the card)."""
    if tok < NOTE_HOLD:
        return ("PAD", "BOS", "EOS", "SILENCE")[tok]
    if tok < NOTE_ON:
        return f"NOTE_HOLD({tok - NOTE_HOLD})"
    if tok < CHORD_HOLD:
        return f"NOTE_ON({tok - NOTE_ON})"
    if tok < CHORD_ON:
        return f"CHORD_HOLD({Chord.from_index(tok - CHORD_HOLD).symbol})"
    if tok < VOCAB_SIZE:
        return f"CHORD_ON({Chord.from_index(tok - CHORD_ON).symbol})"
    raise ValueError(f"token id {tok} outside the vocabulary (size {VOCAB_SIZE})")


def token_table() -> list[dict]:
    """Every token with what the app needs to act on it without importing training code."""
    table: list[dict] = [{"id": i, "kind": k} for i, k in enumerate(("pad", "bos", "eos", "silence"))]
    for onset, base in ((False, NOTE_HOLD), (True, NOTE_ON)):
        for p in range(N_PITCHES):
            table.append({"id": base + p, "kind": "note_on" if onset else "note_hold", "pitch": p})
    for onset, base in ((False, CHORD_HOLD), (True, CHORD_ON)):
        for c in range(N_CHORDS):
            chord = Chord.from_index(c)
            table.append({
                "id": base + c, "kind": "chord_on" if onset else "chord_hold", "chord": c, "root": chord.root,
                "quality": QUALITIES[chord.quality].name, "symbol": chord.symbol,
                "pitch_classes": list(chord.pitch_classes),
            })
    assert len(table) == VOCAB_SIZE
    return table
