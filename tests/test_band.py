"""The band (issue 20): comping styles, dynamics, bass lines and drums, precomputed from committed chords only.

The arranger is checked on hand-made plans over a real vocabulary (the tiny bundle's); the style's rhythm is
checked where a listener would hear it: in the onset envelope of a real FluidSynth render."""

from __future__ import annotations

import json
import wave

import mido
import numpy as np
import pytest

from app.cli import main
from app.engine.arrange import Arrangement, Arranger, ArrState
from app.engine.bass import BASS_LINES
from app.engine.bundle import load_bundle
from app.engine.drums import DRUM_CHANNEL, DRUM_CHOICES
from app.engine.options import BAND_KNOBS, JamSettings
from app.engine.performer import ChordPerformer
from app.engine.styles import STYLES
from app.recording import Recorder, sidecar_path
from app.synth import render_midi_to_wav

BPM = 120.0
FRAME_S = 60.0 / (BPM * 4)


@pytest.fixture(scope="module")
def vocab(tiny_bundle):
    return load_bundle(tiny_bundle).card.vocab


def onset_of(vocab, symbol: str) -> int:
    return next(t.id for t in vocab.chord_info.values() if t.symbol == symbol and t.is_onset)


def plan_tokens(vocab, changes: list[tuple[int, str | None]], frames: int) -> list[int]:
    """A token per frame: (frame, symbol or None for silence) changes, held in between."""
    out, at = [], dict(changes)
    tok = vocab.silence
    for g in range(frames):
        if g in at:
            tok = onset_of(vocab, at[g]) if at[g] else vocab.silence
        elif tok != vocab.silence:
            tok = vocab.hold(tok)
        out.append(tok)
    return out


class Book:
    """A sink that keeps what it was told."""

    thru = False

    def __init__(self) -> None:
        self.on: list[tuple[str, int, int]] = []
        self.sounding: set[tuple[str, int]] = set()

    def note_on(self, part, pitch, velocity):
        self.on.append((part, pitch, velocity))
        self.sounding.add((part, pitch))

    def note_off(self, part, pitch):
        self.sounding.discard((part, pitch))

    def control(self, part, status, data):
        pass

    def all_off(self):
        self.sounding.clear()


def perform(vocab, tokens: list[int], arrangement: Arrangement, tmp_path, commit: int = 16, sinks=(),
            velocities: dict[int, int] | None = None, name: str = "band", programs: dict | None = None
            ) -> tuple[ChordPerformer, object]:
    """Play ``tokens`` as a simulated jam does (prepare from the committed part, then play) and save it."""
    header = {"bpm": BPM, "meter": list(arrangement.meter), "t0": 0.0, "programs": programs or {}}
    rec = Recorder(tmp_path, header, stem=name)
    p = ChordPerformer(vocab, list(sinks), rec, arrangement=arrangement)
    for f, tok in enumerate(tokens):
        if velocities and f in velocities:
            p.hear(velocities[f])
        p.prepare({g: tokens[g] for g in range(f, min(len(tokens), f + commit))})
        p.play(f, f * FRAME_S, tok)
    p.release(len(tokens), len(tokens) * FRAME_S)
    return p, rec.save(tmp_path / f"{name}.mid")


def notes(track) -> list[tuple[int, int, int]]:
    """(on tick, pitch, velocity) of every note-on."""
    now, out = 0, []
    for m in track:
        now += m.time
        if m.type == "note_on" and m.velocity > 0:
            out.append((now, m.note, m.velocity))
    return out


# --- the tables --------------------------------------------------------------------------------------------------

def test_every_style_bass_line_and_groove_is_a_choice_of_jam_and_rejam(tmp_path):
    from app.cli import build_parser

    names = {k.name: k.choices for k in BAND_KNOBS if k.choices}
    assert names == {"style": tuple(STYLES), "bass": tuple(BASS_LINES), "drums": DRUM_CHOICES}
    for argv in (["jam", "--in", "x"], ["rejam", "m.mid", "-o", "o.mid"]):
        args = build_parser().parse_args(argv + ["--style", "bossa", "--bass", "walking", "--drums", "auto"])
        assert (args.style, args.bass, args.drums) == ("bossa", "walking", "auto")
        assert build_parser().parse_args(argv).style == "pad"  # today's sound stays the default
    s = JamSettings.from_args(build_parser().parse_args(["jam", "--in", "x", "--style", "swing", "--dynamics-low",
                                                         "50"]))
    assert (s.style, s.bass, s.drums, s.dynamics_low) == ("swing", "root", "off", 50)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jam", "--in", "x", "--style", "polka"])
    render = build_parser().parse_args(["render", "x.mid", "-o", "x.wav"])
    assert (render.style, render.bass, render.drums) == (None, None, None)  # the file as it was played


# --- styles --------------------------------------------------------------------------------------------------------

def test_the_default_pad_strikes_at_changes_only_and_holds(vocab, tmp_path):
    tokens = plan_tokens(vocab, [(0, "C"), (16, "G"), (40, None), (48, "F")], 64)
    p, midi = perform(vocab, tokens, Arrangement(), tmp_path)
    mid = mido.MidiFile(midi)
    assert [t.name for t in mid.tracks] == ["Conductor", "Melody", "Chords", "Bass", "Drums"]
    chords, bass = notes(mid.tracks[2]), notes(mid.tracks[3])
    assert sorted({t // 120 for t, _, _ in chords}) == [0, 16, 48] and len(chords) == 9
    assert [(t // 120, p % 12) for t, p, _ in bass] == [(0, 0), (16, 7), (48, 5)]
    assert notes(mid.tracks[4]) == [] and p.chords_struck == 3
    markers = [m.text for m in mid.tracks[0] if m.type == "marker"]
    assert markers == ["C", "G", "F"]  # the chords are still chords (the waterfall and the lead sheet read them)


@pytest.mark.parametrize("style,steps", [
    ("block", {0, 4, 8, 12}), ("offbeat", {2, 6, 10, 14}), ("bossa", {0, 3, 6, 10, 13}), ("swing", {0, 6}),
    ("arp_up", set(range(0, 16, 2))), ("ballad", {0}),
])
def test_each_style_strikes_on_its_pattern_between_changes(vocab, tmp_path, style, steps):
    tokens = plan_tokens(vocab, [(0, "C")], 64)  # one chord for four bars: every onset after 0 is the style's
    _, midi = perform(vocab, tokens, Arrangement(style=style, bpm=BPM), tmp_path)
    chords = notes(mido.MidiFile(midi).tracks[2])
    grid = {round(t / 120) % 16 for t, _, _ in chords}  # swing and humanize move notes by less than half a 16th
    assert grid == steps
    assert len({round(t / 120) for t, _, _ in chords}) == 4 * len(steps)


def test_arpeggios_walk_the_voicing_and_alberti_goes_low_high_mid_high(vocab, tmp_path):
    tokens = plan_tokens(vocab, [(0, "C")], 16)
    seqs = {}
    for style in ("arp_up", "arp_down", "alberti"):
        _, midi = perform(vocab, tokens, Arrangement(style=style), tmp_path, name=style)
        seqs[style] = [p for _, p, _ in notes(mido.MidiFile(midi).tracks[2])][:4]
    up = seqs["arp_up"]
    assert up[:3] == sorted(up[:3]) and up[3] == up[0]  # a triad: low, mid, high, low again
    assert seqs["arp_down"][:3] == sorted(up[:3], reverse=True)
    low, mid, high = sorted(up[:3])
    assert seqs["alberti"] == [low, high, mid, high]


def test_ballad_revoices_a_held_chord(vocab, tmp_path):
    tokens = plan_tokens(vocab, [(0, "C")], 48)
    _, midi = perform(vocab, tokens, Arrangement(style="ballad"), tmp_path)
    chords = notes(mido.MidiFile(midi).tracks[2])
    bars = [tuple(sorted(p for t, p, _ in chords if round(t / 120) == b * 16)) for b in range(3)]
    assert all(len(v) == 3 and {p % 12 for p in v} == {0, 4, 7} for v in bars)
    assert bars[0] != bars[1] and bars[1] != bars[2]  # another inversion each bar, the same chord


def test_humanize_is_seeded_light_and_never_early(vocab, tmp_path):
    tokens = plan_tokens(vocab, [(0, "C"), (32, "Am")], 64)
    a = Arranger(vocab, Arrangement(style="block", seed=1, bpm=BPM))
    b = Arranger(vocab, Arrangement(style="block", seed=2, bpm=BPM))

    def run(arr):
        state, out = ArrState(), []
        for g, tok in enumerate(tokens):
            plan = arr.step(state, g, tok, {})
            state = plan.after
            out += [(g, late, vel) for late, part, _, _, vel in plan.ons if part == "chords"]
        return out

    one, again, other = run(a), run(Arranger(vocab, Arrangement(style="block", seed=1, bpm=BPM))), run(b)
    assert one == again and one != other
    assert all(0.0 <= late <= STYLES["block"].humanize_ms / 1000 for _, late, _ in one)
    assert max(late for _, late, _ in one) > 0.0005 and len({v for _, _, v in one}) > 3


def test_swing_delays_the_off_beat_eighth_towards_the_triplet(vocab):
    arr = Arranger(vocab, Arrangement(style="swing", bpm=BPM, seed=0))
    tokens = plan_tokens(vocab, [(0, "C")], 16)
    state, late = ArrState(), {}
    for g, tok in enumerate(tokens):
        plan = arr.step(state, g, tok, {})
        state = plan.after
        late.update({g: min(x[0] for x in plan.ons if x[1] == "chords")} if any(x[1] == "chords" for x in plan.ons)
                    else {})
    assert late[0] < 0.005  # the downbeat on the grid (but for a few ms of humanize)
    swing = STYLES["swing"].swing * 2 / 3 * FRAME_S
    assert swing <= late[6] <= swing + 0.005  # the "and" of 2, swung


def test_swing_follows_a_tempo_change_made_after_the_plan(vocab):
    """The arranger swings at the jam's starting tempo, ahead of time; played at half that tempo (a MIDI clock or
    Link session slowed down), the swung 8th must still sit on the same fraction of the beat."""
    tokens = plan_tokens(vocab, [(0, "C")], 16)

    def swung_eighth(frame_s):
        sink = Book()
        p = ChordPerformer(vocab, [sink], None, arrangement=Arrangement(style="swing", bpm=BPM, seed=0))
        p.prepare(dict(enumerate(tokens)))
        for g in range(7):
            p.play(g, g * frame_s, tokens[g], frame_s)
        return p.next_pending() - 6 * frame_s  # the "and" of 2 waits in the frame, swung

    at_tempo, slower = swung_eighth(FRAME_S), swung_eighth(2 * FRAME_S)
    swing = STYLES["swing"].swing * 2 / 3
    assert swing <= at_tempo / FRAME_S <= swing + 0.005 / FRAME_S
    assert slower == pytest.approx(2 * at_tempo, rel=0.02)  # the same place in a beat twice as long


# --- dynamics ---------------------------------------------------------------------------------------------------

def test_velocity_follows_the_player_within_the_range_and_accents_the_downbeat(vocab, tmp_path):
    tokens = plan_tokens(vocab, [(0, "C")], 96)
    soft = {f: 30 for f in range(0, 48, 2)}
    loud = {f: 125 for f in range(48, 96, 2)}
    _, midi = perform(vocab, tokens, Arrangement(style="block", seed=0), tmp_path, velocities=soft | loud)
    chords = notes(mido.MidiFile(midi).tracks[2])
    first, last = [v for t, _, v in chords if t < 48 * 120], [v for t, _, v in chords if t >= 80 * 120]
    assert max(first[12:]) < min(last)  # softer while the player is soft, louder once they play loud
    sink = Book()
    p = ChordPerformer(vocab, [sink], None, arrangement=Arrangement(style="block", seed=0), dynamics=(60, 70))
    for f, tok in enumerate(tokens[:32]):
        p.hear(127)
        p.play(f, f * FRAME_S, tok)
    assert all(60 <= v <= 70 for _, _, v in sink.on)
    p = ChordPerformer(vocab, [Book()], None, arrangement=Arrangement(style="block", seed=0))
    beats = {}
    for f, tok in enumerate(tokens[:16]):
        plan = p.arranger.step(p.state, f, tok, {})
        p.state = plan.after
        beats[f] = [gain for _, part, _, gain, _ in plan.ons if part == "chords"]
    assert beats[0][0] > beats[8][0] > beats[4][0]  # the downbeat, then the half bar, then the other beats


# --- bass lines ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line,expect", [
    ("root_fifth", [(0, 0), (8, 7), (16, 0), (24, 7)]),
    ("octave", [(s, 0) for s in range(0, 32, 2)]),
])
def test_bass_lines(vocab, tmp_path, line, expect):
    tokens = plan_tokens(vocab, [(0, "C")], 32)
    _, midi = perform(vocab, tokens, Arrangement(bass=line), tmp_path)
    bass = notes(mido.MidiFile(midi).tracks[3])
    assert [(round(t / 120), p % 12) for t, p, _ in bass] == expect
    if line == "octave":
        assert bass[1][1] - bass[0][1] == 12


def test_the_walking_bass_reaches_the_next_root_by_step_on_many_random_plans(vocab, tmp_path):
    """Random plans (chords of random length, changes on and off the beat, rests): every change is struck on its
    root, and a change committed a beat ahead is approached by a half step in the beat before it."""
    rng = np.random.default_rng(0)
    symbols = sorted({t.symbol for t in vocab.chord_info.values() if t.is_onset})
    arr = Arranger(vocab, Arrangement(bass="walking", bpm=BPM))
    approached = 0
    for trial in range(40):
        changes, g = [], 0
        while g < 160:
            changes.append((g, None if rng.random() < 0.1 else str(rng.choice(symbols))))
            g += int(rng.choice([4, 8, 8, 16, 16, 6, 2]))
        tokens = plan_tokens(vocab, changes, 160)
        state, struck = ArrState(), {}
        for g, tok in enumerate(tokens):
            plan = arr.step(state, g, tok, {f: tokens[f] for f in range(g + 1, min(160, g + 17))})
            state = plan.after
            struck.update((g, p) for _, part, p, _, _ in plan.ons if part == "bass")
        def change(g: int, tokens: list[int] = tokens) -> bool:
            info, was = vocab.chord_info.get(tokens[g]), vocab.chord_info.get(tokens[g - 1]) if g else None
            return info is not None and (info.is_onset or was is None or was.chord != info.chord)

        for g in range(1, 160):
            if not change(g):
                continue
            assert struck[g] % 12 == vocab.chord_info[tokens[g]].root, (trial, g)  # the first beat: its root
            before = [f for f in struck if g - 4 <= f < g]
            beat = max(before, default=-1)
            if beat % 4 == 0 and not change(beat) and vocab.chord_info.get(tokens[g - 1]) is not None:
                assert abs(struck[beat] - struck[g]) == 1, (trial, g)  # the beat before stepped to it
                approached += 1
    assert approached > 100


def test_the_walking_bass_never_walks_to_a_chord_that_is_not_committed(vocab):
    tokens = plan_tokens(vocab, [(0, "C"), (16, "A")], 32)
    arr = Arranger(vocab, Arrangement(bass="walking", bpm=BPM))
    for committed in (True, False):
        state, struck = ArrState(), {}
        for g, tok in enumerate(tokens):
            ahead = {f: tokens[f] for f in range(g + 1, 32)} if committed else {}  # the A only tentative
            plan = arr.step(state, g, tok, ahead)
            state = plan.after
            struck.update((g, p) for _, part, p, _, _ in plan.ons if part == "bass")
        if committed:
            assert abs(struck[12] - struck[16]) == 1
        else:
            assert struck[12] % 12 in (0, 4, 7)  # a tone of the C that sounds: no step towards the A


# --- drums ---------------------------------------------------------------------------------------------------------

def test_drums_are_off_by_default_on_channel_10_when_asked_with_a_fill_before_the_band_comes_in(vocab, tmp_path):
    tokens = plan_tokens(vocab, [(32, "C")], 64)
    _, midi = perform(vocab, tokens, Arrangement(drums="rock", listen=32), tmp_path)
    drums = mido.MidiFile(midi).tracks[4]
    assert {m.channel for m in drums if m.type == "note_on"} == {DRUM_CHANNEL}
    hits = [(round(t / 120), p) for t, p, _ in notes(drums)]
    assert all(f >= 16 + 8 for f, _ in hits)  # silent while the player plays alone, but for the fill
    fill = [p for f, p in hits if f < 32]
    assert fill and set(fill) <= {36, 38, 45, 47, 50} and (32, 49) in hits  # snare and toms, then a crash
    assert {(f, p) for f, p in hits if f >= 32} >= {(32, 36), (36, 38), (44, 38), (40, 36)}  # rock: kick 1 3, snare
    _, plain = perform(vocab, tokens, Arrangement(listen=32), tmp_path, name="plain")
    assert notes(mido.MidiFile(plain).tracks[4]) == []


def test_the_scheduler_only_looks_up_precomputed_frames(vocab):
    tokens = plan_tokens(vocab, [(0, "C"), (8, "G"), (20, "Am")], 64)
    sink = Book()
    p = ChordPerformer(vocab, [sink], None, arrangement=Arrangement(style="bossa", bass="walking", drums="bossa"))
    for f, tok in enumerate(tokens):
        p.prepare({g: tokens[g] for g in range(f, min(64, f + 16))})
        p.play(f, f * FRAME_S, tok)
        p.play_pending(float("inf"))
    assert p.computed_late <= 4 and p.precomputed >= 60  # only the last beat, whose next beat is never promised
    p.release()
    assert sink.sounding == set()  # every note-on got its note-off


# --- end to end: rejam, the saved file, a real render --------------------------------------------------------------

def test_rejam_with_a_band_writes_four_tracks_and_the_same_seed_gives_the_same_file(tiny_bundle, tmp_path):
    melody = "assets/melodies/ode_to_joy.mid"
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.mid"
        assert main(["rejam", melody, "-o", str(out), "--model", str(tiny_bundle), "--style", "bossa", "--bass",
                     "walking", "--drums", "bossa", "--seed", "5", "--listen", "4"]) == 0
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    mid = mido.MidiFile(outs[0])
    assert [t.name for t in mid.tracks[1:]] == ["Melody", "Chords", "Bass", "Drums"]
    assert all(notes(t) for t in mid.tracks[1:])
    side = json.loads(sidecar_path(outs[0]).read_text())
    assert side["settings"]["band"] == {"style": "bossa", "bass": "walking", "drums": "bossa", "dynamics": [30, 115]}
    wav = tmp_path / "x.wav"
    assert main(["render", str(outs[0]), "-o", str(wav)]) == 0
    assert wav.stat().st_size > 44100
    # the same take played again by a swing band: the chords and the melody stay, the band's notes change
    from app.engine.rearrange import rearrange

    swung = rearrange(outs[0], mid, {"style": "swing", "bass": "walking", "drums": "swing"}, seed=5)
    assert [t.name for t in swung.tracks] == [t.name for t in mid.tracks]
    assert swung.tracks[0] == mid.tracks[0] and notes(swung.tracks[1]) == notes(mid.tracks[1])
    assert notes(swung.tracks[3]) == notes(mid.tracks[3])  # the same walking line over the same chords
    steps = {round(t / 120) % 16 for t, _, _ in notes(swung.tracks[2])}
    markers = {round(t / 120) % 16 for t, m in _markers(mid)}
    assert 6 in steps and steps <= markers | {0, 6}  # Charleston: 1 and the (swung) and of 2, and the changes
    assert {m.channel for m in swung.tracks[4] if m.type == "note_on"} == {DRUM_CHANNEL}
    assert main(["render", str(outs[0]), "-o", str(tmp_path / "swing.wav"), "--style", "swing"]) == 0
    assert main(["render", melody, "-o", str(tmp_path / "no.wav"), "--style", "swing"]) == 2  # no chords in it


def _markers(mid) -> list[tuple[int, str]]:
    now, out = 0, []
    for m in mid.tracks[0]:
        now += m.time
        if m.type == "marker":
            out.append((now, m.text))
    return out


def onset_envelope(path, hop: float = 0.005, window: float = 0.03, back: int = 8) -> tuple[np.ndarray, float]:
    """A crude onset envelope of a WAV: every ``hop`` seconds, how many times louder (RMS over ``window``, long
    enough to hold a bass note's period) it is than ``back`` hops before: a note struck is several times louder, a
    held or decaying sound 1 or less. Returns it and the hop in seconds."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.diff(np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2).mean(1))  # the bass less
    n, k = int(rate * hop), int(rate * window)
    power = np.convolve(x ** 2, np.ones(k) / k, mode="full")[k - 1: len(x) + k - 1]  # the window ending here
    e = np.sqrt(power[::n]) + 1.0
    return e / np.concatenate([np.full(back, e[0]), e[:-back]]), hop


@pytest.mark.parametrize("style,steps", [("pad", set()), ("block", {4, 8, 12}), ("offbeat", {2, 6, 10, 14})])
def test_the_styles_rhythm_is_audible_in_a_real_render(vocab, tmp_path, style, steps):
    """One chord a bar (C, F, G, C) rendered by FluidSynth: between the changes (the bar lines) a listener hears
    onsets exactly where the style strikes, and nothing where it does not."""
    tokens = plan_tokens(vocab, [(0, "C"), (16, "F"), (32, "G"), (48, "C")], 64)
    _, midi = perform(vocab, tokens, Arrangement(style=style, bpm=BPM), tmp_path)
    wav = tmp_path / "band.wav"
    render_midi_to_wav(midi, wav)
    env, hop = onset_envelope(wav)

    def rise(frame: int) -> float:
        i = int(round(frame * FRAME_S / hop))
        return float(env[i:i + 5].max())  # within 25 ms: humanize is under 5 ms, these styles do not swing

    for bar in range(4):
        assert bar == 0 or rise(bar * 16) > 2, (style, bar)  # every change is heard (the file starts with one)
        for step in range(1, 16):
            heard = rise(bar * 16 + step)
            if step in steps:
                assert heard > 2.5, (style, bar, step, heard)
            else:
                assert heard < 1.3, (style, bar, step, heard)  # nothing struck: held or dying away


def test_a_replay_shows_a_styles_chords_as_chords_and_plays_the_drums(vocab, tmp_path):
    from app.gui.replay import load_replay

    tokens = plan_tokens(vocab, [(0, "C"), (16, "F"), (32, "G")], 48)
    _, midi = perform(vocab, tokens, Arrangement(style="arp_up", bass="walking", drums="pop"), tmp_path)
    r = load_replay(midi)
    assert [(b.start, b.symbol, {p % 12 for p in b.notes}) for b in r.chords] == [
        (0, "C", {0, 4, 7}), (16, "F", {5, 9, 0}), (32, "G", {7, 11, 2})]  # one block a chord, not a note a 16th
    assert any(part == "drums" for _, kind, part, _, _ in r.events if kind == "on")


def test_a_journal_line_of_a_band_note_with_an_unknown_part_is_skipped_and_said(tmp_path):
    from app.recording.journal import event_problem

    assert event_problem({"e": "pn", "f": 0, "t": 0.0, "c": "drums", "p": 36, "v": 90}) is None
    assert "'c'" in event_problem({"e": "pn", "f": 0, "t": 0.0, "c": "kazoo", "p": 36, "v": 90})
    assert "'v'" in event_problem({"e": "pn", "f": 0, "t": 0.0, "c": "bass", "p": 36, "v": 0})


def _most_at_once(track) -> int:
    now, on, most = 0, set(), 0
    for m in track:
        now += m.time
        if m.type == "note_on" and m.velocity > 0:
            on.add(m.note)
            most = max(most, len(on))
        elif m.type in ("note_on", "note_off"):
            on.discard(m.note)
    return most


@pytest.mark.parametrize("style,line", [("ballad", "walking"), ("pad", "octave"), ("block", "root_fifth")])
def test_the_bass_plays_one_note_at_a_time_and_a_revoiced_chord_lets_the_old_voicing_go(vocab, tmp_path, style,
                                                                                          line):
    tokens = plan_tokens(vocab, [(0, "C"), (24, "Am"), (40, "F"), (50, "G")], 80)
    _, midi = perform(vocab, tokens, Arrangement(style=style, bass=line), tmp_path)
    mid = mido.MidiFile(midi)
    assert _most_at_once(mid.tracks[3]) == 1
    assert _most_at_once(mid.tracks[2]) == 3  # triads: never the old voicing under the new one
