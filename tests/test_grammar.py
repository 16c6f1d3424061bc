"""The token grammar built from the card's token table, and masked sampling."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.grammar import Grammar, sample
from training.data import tokens as T

G = Grammar.from_table(T.token_table())


def test_chord_slot_takes_only_chord_onsets_or_silence_at_the_start():
    allowed = np.flatnonzero(G.allowed("chord", None))
    assert T.SILENCE in allowed
    assert all(t == T.SILENCE or T.CHORD_ON <= t < T.VOCAB_SIZE for t in allowed)
    assert len(allowed) == 1 + (T.VOCAB_SIZE - T.CHORD_ON)


def test_a_hold_must_continue_the_sounding_chord():
    c_on = T.CHORD_ON + 17
    allowed = G.allowed("chord", c_on)
    holds = [t for t in np.flatnonzero(allowed) if T.CHORD_HOLD <= t < T.CHORD_ON]
    assert holds == [T.CHORD_HOLD + 17]
    assert G.is_valid("chord", T.CHORD_HOLD + 17, T.CHORD_HOLD + 17)
    assert not G.is_valid("chord", T.CHORD_HOLD + 17, T.CHORD_HOLD + 18)
    assert not G.is_valid("chord", T.SILENCE, T.CHORD_HOLD + 17)


def test_melody_slot_and_specials():
    assert G.is_valid("melody", T.NOTE_ON + 60, T.NOTE_HOLD + 60)
    assert not G.is_valid("melody", T.NOTE_ON + 60, T.NOTE_HOLD + 61)
    assert not G.is_valid("melody", None, T.CHORD_ON)
    for slot in ("chord", "melody"):
        for special in (T.PAD, T.BOS, T.EOS):
            assert not G.allowed(slot, None)[special]


@given(st.integers(0, 2**32 - 1), st.floats(0.0, 3.0), st.integers(0, 50), st.floats(0.05, 1.0))
def test_sampling_never_leaves_the_mask(seed, temperature, top_k, top_p):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=T.VOCAB_SIZE) * 5
    prev = int(rng.choice([T.CHORD_ON + 3, T.CHORD_HOLD + 3, T.SILENCE]))
    allowed = G.allowed("chord", prev)
    tok = sample(logits, allowed, rng, temperature, top_k, top_p)
    assert allowed[tok]


def test_greedy_top_k_and_top_p():
    logits = np.full(T.VOCAB_SIZE, -10.0)
    logits[[T.CHORD_ON + 1, T.CHORD_ON + 2, T.CHORD_ON + 3, T.PAD]] = [5.0, 4.0, 3.0, 100.0]
    allowed = G.allowed("chord", None)
    rng = np.random.default_rng(0)
    assert sample(logits, allowed, rng, temperature=0) == T.CHORD_ON + 1  # PAD's huge logit is masked out
    picks = {sample(logits, allowed, rng, top_k=2) for _ in range(200)}
    assert picks == {T.CHORD_ON + 1, T.CHORD_ON + 2}
    picks = {sample(logits, allowed, rng, top_p=0.5) for _ in range(200)}
    assert picks == {T.CHORD_ON + 1}


def test_grammar_from_a_table_with_unknown_layout_still_works():
    """The grammar reads kinds from the table, not fixed id ranges: shuffle ids and it follows."""
    table = T.token_table()
    perm = np.random.default_rng(1).permutation(len(table))
    shuffled = [dict(t, id=int(perm[t["id"]])) for t in table]
    g = Grammar.from_table(sorted(shuffled, key=lambda t: t["id"]))
    on = int(perm[T.CHORD_ON + 5])
    assert g.allowed("chord", on)[int(perm[T.CHORD_HOLD + 5])]
    assert not g.allowed("chord", on)[int(perm[T.CHORD_HOLD + 6])]
    with pytest.raises(ValueError, match="no bos token"):
        Grammar.from_table([dict(t, id=i) for i, t in enumerate(x for x in table if x["kind"] != "bos")])
