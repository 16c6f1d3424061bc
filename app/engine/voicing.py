"""Chord voicing: a bass note plus a close-position chord, each in a settable range, with optional voice leading.

The model says *which* chord (root + pitch classes); a pianist decides *how* to play it. Close position in a
mid register is what comping hands do; with voice leading on, each chord takes the inversion whose notes move
least from the previous voicing, so a progression sounds connected instead of jumping in parallel blocks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VoicingSettings:
    bass_low: int = 36  # C2
    bass_high: int = 47  # B2
    chord_low: int = 52  # E3
    chord_high: int = 72  # C5
    voice_leading: bool = True


@dataclass(frozen=True)
class Voicing:
    bass: int | None
    notes: tuple[int, ...]

    @property
    def pitches(self) -> tuple[int, ...]:
        return ((self.bass,) if self.bass is not None else ()) + self.notes


def _bass(root: int, s: VoicingSettings) -> int:
    p = s.bass_low + (root - s.bass_low) % 12
    return p if p <= s.bass_high else p - 12


def _close_positions(pcs: tuple[int, ...], s: VoicingSettings) -> list[tuple[int, ...]]:
    """Every close-position stack (each inversion, each octave) that fits in the chord range."""
    pcs = tuple(sorted(set(pcs)))
    out = []
    for inv in range(len(pcs)):
        order = pcs[inv:] + pcs[:inv]
        for base in range(s.chord_low - 12, s.chord_high + 1):
            if base % 12 != order[0]:
                continue
            notes = [base]
            for pc in order[1:]:
                nxt = notes[-1] + 1
                while nxt % 12 != pc:
                    nxt += 1
                notes.append(nxt)
            if notes[0] >= s.chord_low and notes[-1] <= s.chord_high:
                out.append(tuple(notes))
    return out


def voice(root: int, pitch_classes: tuple[int, ...] | list[int], settings: VoicingSettings = VoicingSettings(),
          previous: Voicing | None = None) -> Voicing:
    """The voicing of one chord; ``previous`` guides voice leading."""
    candidates = _close_positions(tuple(pitch_classes), settings)
    if not candidates:  # range narrower than the chord: fall back to stacking from the bottom of the range
        candidates = [tuple(sorted(settings.chord_low + (pc - settings.chord_low) % 12 for pc in pitch_classes))]
    centre = (settings.chord_low + settings.chord_high) / 2
    if settings.voice_leading and previous is not None and previous.notes:
        def movement(c: tuple[int, ...]) -> float:
            return sum(min(abs(n - p) for p in previous.notes) for n in c) + 0.01 * abs(sum(c) / len(c) - centre)
        best = min(candidates, key=movement)
    else:
        best = min(candidates, key=lambda c: abs(sum(c) / len(c) - centre))
    return Voicing(_bass(root, settings), best)


def revoice(current: Voicing, pitch_classes: tuple[int, ...] | list[int],
            settings: VoicingSettings = VoicingSettings()) -> Voicing:
    """The same chord in the neighbouring inversion (up while the voicing sits below the range's centre, else
    down): a held chord struck again moves instead of repeating (a ballad's re-voicing). The bass stays."""
    candidates = sorted(_close_positions(tuple(pitch_classes), settings), key=lambda c: sum(c) / len(c))
    if current.notes not in candidates or len(candidates) < 2:
        return current
    i = candidates.index(current.notes)
    centre = (settings.chord_low + settings.chord_high) / 2
    j = i + 1 if sum(current.notes) / len(current.notes) < centre else i - 1
    return Voicing(current.bass, candidates[j if 0 <= j < len(candidates) else i - (j - i)])
