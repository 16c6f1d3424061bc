"""The rule penalties of the RL reward (ReaLchords / GAPT, weights as in the reference code).

Each takes a batch of rollouts as chord tokens [B, T] (one per frame, as sampled) and melody tokens [B, T] (the
data melody the policy played against) and returns one penalty per sequence (<= 0), so the whole reward is a sum
of per-sequence terms placed on the last chord (GAPT: trajectory-level rewards).

* invalid: -10 for a sequence with a special token in a chord slot, or a hold that does not continue the chord
  sounding before it. Rollouts here are always sampled under the grammar mask and never trigger it; it is kept
  for the reference's unmasked sampling and as a guard that the mask holds (the RL tests assert it stays 0).
* silence: after a grace period of 8 frames, if more than 4% of the frames where the melody sounds have no chord,
  -1/10 per such frame.
* early stop: an EOS in a chord slot before the melody ends costs (melody frames left) / 10.
* repetition: every run of more than 4 consecutive chord events with the same chord costs (run length) / 10.
* harmonic rhythm (ours, weighted by ``RLConfig.rhythm``): the distance of a rollout's chord changes and off-beat
  strikes from the same window's real chords.
"""

from __future__ import annotations

import torch

from ..data import tokens as T

INVALID = -10.0
SILENCE_GRACE, SILENCE_RATE = 8, 0.04
REPEAT_LIMIT = 4


def _chord_value(tok: torch.Tensor) -> torch.Tensor:
    """Vocabulary chord index per token, -1 for anything that is not a chord token."""
    is_chord = (tok >= T.CHORD_HOLD) & (tok < T.VOCAB_SIZE)
    return torch.where(is_chord, (tok - T.CHORD_HOLD) % (T.CHORD_ON - T.CHORD_HOLD), torch.full_like(tok, -1))


def invalid(chords: torch.Tensor) -> torch.Tensor:
    special = (chords == T.PAD) | (chords == T.BOS) | (chords == T.EOS) | ((chords >= T.NOTE_HOLD) & (chords < T.CHORD_HOLD))
    hold = (chords >= T.CHORD_HOLD) & (chords < T.CHORD_ON)
    prev = torch.cat([torch.full_like(chords[:, :1], T.SILENCE), chords[:, :-1]], 1)
    orphan = hold & (_chord_value(prev) != _chord_value(chords))
    # an EOS is judged by the early-stop penalty, not as invalid, when only EOS / PAD follow it
    eos_seen = torch.cumsum(chords == T.EOS, 1) > 0
    bad = (special & ~eos_seen) | (orphan & ~eos_seen)
    return torch.where(bad.any(1), torch.tensor(INVALID), torch.tensor(0.0))


def silence(chords: torch.Tensor, melody: torch.Tensor) -> torch.Tensor:
    sounding = (melody >= T.NOTE_HOLD) & (melody < T.CHORD_HOLD)
    sounding[:, :SILENCE_GRACE] = False
    silent = sounding & (chords == T.SILENCE)
    n_silent, n_sounding = silent.sum(1).float(), sounding.sum(1).float().clamp(min=1)
    return torch.where(n_silent / n_sounding > SILENCE_RATE, -n_silent / 10, torch.zeros_like(n_silent))


def early_stop(chords: torch.Tensor, melody: torch.Tensor) -> torch.Tensor:
    n = chords.shape[1]
    is_eos = chords == T.EOS
    first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((chords.shape[0],), n))
    sounding = (melody >= T.NOTE_HOLD) & (melody < T.CHORD_HOLD)
    idx = torch.arange(n).expand_as(melody)
    melody_end = torch.where(sounding, idx + 1, torch.zeros_like(idx)).max(1).values
    return -(melody_end - first_eos).clamp(min=0).float() / 10


def repetition(chords: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(chords.shape[0])
    onsets = chords >= T.CHORD_ON
    values = _chord_value(chords)
    for b in range(chords.shape[0]):
        events = values[b][onsets[b]].tolist()
        run = 1
        for i in range(1, len(events) + 1):
            if i < len(events) and events[i] == events[i - 1]:
                run += 1
                continue
            if run > REPEAT_LIMIT:
                out[b] -= run / 10
            run = 1
    return out


def all_penalties(chords: torch.Tensor, melody: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"invalid": invalid(chords), "silence": silence(chords, melody),
            "early_stop": early_stop(chords, melody), "repetition": repetition(chords)}


def changes_and_offbeat(chords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: how many frames change the sounding chord, and the share of struck chords off the beat
    (frame % 4 != 0; windows start on a beat). Conventions of ``training.evaluation.heard``."""
    values = _chord_value(chords)
    prev = torch.cat([torch.full_like(values[:, :1], -1), values[:, :-1]], 1)
    n_changes = ((values != prev) & (values >= 0)).sum(1).float()
    onsets = chords >= T.CHORD_ON
    offbeat = onsets & (torch.arange(chords.shape[1]) % 4 != 0)
    return n_changes, offbeat.sum(1).float() / onsets.sum(1).float().clamp(min=1)


def harmonic_rhythm(chords: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """How far a rollout's harmonic rhythm is from the song's own over the same frames (<= 0).

    The relative error of its number of chord changes (against at least one change a bar, so a song that holds
    one chord does not make every extra change ruinous), plus the share of its chord strikes off the beat beyond
    the song's. Against the same window's real chords rather than a corpus mean: a ballad and a reel want
    different rates. Why: coherence rewards alone pay a policy that flickers between chords that fit each note."""
    mine, mine_off = changes_and_offbeat(chords)
    theirs, theirs_off = changes_and_offbeat(real)
    floor = torch.full_like(theirs, chords.shape[1] / 16)
    return -((mine - theirs).abs() / torch.maximum(theirs, floor) + (mine_off - theirs_off).clamp(min=0))
