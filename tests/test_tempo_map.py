"""The saved take keeps its timing whatever the tempo did: a tempo change mid-jam (the Tempo setting, tap tempo) and
an external clock's ramp are journaled (``tempo`` / ``grid`` lines) and saved as a tempo map, every chord on its
frame's tick and a MIDI player's seconds the take's; a journal without them (every older one) saves as it always
did, byte for byte; the lead sheet and the melody reader read such a file on its grid."""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import mido
import pytest

from app.engine.bundle import load_bundle
from app.engine.clock import FrameClock
from app.engine.follow import TICKS_PER_BEAT, ClockFollower
from app.engine.live import JamSession, JamSettings
from app.engine.midifile import read_melody
from app.engine.policy import OnnxPolicy
from app.leadsheet.sheet import read_leadsheet
from app.recording import Recorder, read_journal, save_session, sidecar_path
from app.recording.tempo import Segment, TempoMap, _knots, _through

T0 = 1000.0  # the engine clock's time of frame 0
SYMBOLS = ("C", "Am", "F", "G")
MELODY, CHORDS = 0, 1  # channels


def conductor(mid: mido.MidiFile) -> list[tuple[int, mido.MetaMessage]]:
    tick, out = 0, []
    for msg in mid.tracks[0]:
        tick += msg.time
        out.append((tick, msg))
    return out


def seconds_of_note_ons(mid: mido.MidiFile, channel: int) -> list[tuple[float, int]]:
    """(seconds, pitch) of a channel's note-ons as mido reckons them through the file's tempo map."""
    now, out = 0.0, []
    for msg in mid:  # mido turns ticks into seconds with every set_tempo on the way
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0 and msg.channel == channel:
            out.append((now, msg.note))
    return out


# --- a tempo change mid-take ------------------------------------------------------------------------------------


def record_tempo_change(directory: Path) -> tuple[Recorder, FrameClock, dict]:
    """Four bars of 4/4 at 100 bpm going to 140 at frame 32, as a jam whose Tempo was set at frame 29: a chord every
    beat, a melody note between frames in every beat, one note in the count-in (a bar of lead-in)."""
    clock = FrameClock(100, T0).with_tempo(140, 32)
    r = Recorder(directory, {"bpm": 100, "meter": "4/4", "t0": T0})
    played = {"chords": {}, "melody": {}}
    r.melody_on(-3, clock.time_of(-3.3), 59, 70)
    r.melody_off(0, clock.time_of(-0.4), 59)
    played["melody"][59] = clock.time_of(-3.3)
    for f in range(0, 64, 4):
        if f == 32:
            r.tempo(32, clock.time_of(32), 140)  # as JamSession.set_tempo writes it, when the Tempo is set
        r.chord(f, clock.time_of(f), SYMBOLS[f // 4 % 4], [48 + f // 4, 64, 67], None, True, 5)
        played["chords"][48 + f // 4] = clock.time_of(f)
        pitch = 70 + f // 4
        r.melody_on(f + 2, clock.time_of(f + 1.5), pitch, 90)
        r.melody_off(f + 3, clock.time_of(f + 2.75), pitch)
        played["melody"][pitch] = clock.time_of(f + 1.5)
    r.close()
    return r, clock, played


def test_a_tempo_change_mid_take_keeps_every_chord_on_its_frame_and_the_seconds_of_the_take(tmp_path):
    r, clock, played = record_tempo_change(tmp_path)
    out = save_session(r.path, tmp_path / "take.mid")
    mid = mido.MidiFile(str(out))
    meta = conductor(mid)
    lead = 16  # frames: one bar of 4/4
    assert [(t, m.tempo) for t, m in meta if m.type == "set_tempo"] == [(0, 600_000), ((32 + lead) * 120, 428_571)]
    assert [(t, m.text) for t, m in meta if m.type == "marker"] == [((f + lead) * 120, SYMBOLS[f // 4 % 4])
                                                                      for f in range(0, 64, 4)]
    tick, chords = 0, []
    for msg in mid.tracks[2]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0 and msg.note < 64:
            chords.append((tick, msg.note))
    assert chords == [((f + lead) * 120, 48 + f // 4) for f in range(0, 64, 4)]  # every chord on its frame's tick
    start = clock.time_of(-lead)  # the file's first tick
    for channel, what in ((CHORDS, "chords"), (MELODY, "melody")):
        heard = {p: s for s, p in seconds_of_note_ons(mid, channel) if p in played[what]}
        assert heard.keys() == played[what].keys()
        for pitch, s in heard.items():
            assert s == pytest.approx(played[what][pitch] - start, abs=0.001), (what, pitch)
    melody_ticks = []
    tick = 0
    for msg in mid.tracks[1]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0 and msg.note >= 70:
            melody_ticks.append(tick)
    assert melody_ticks == [round((f + 1.5 + lead) * 120) for f in range(0, 64, 4)]  # between the same frames
    side = json.loads(sidecar_path(out).read_text())
    assert side["bpm"] == 100 and side["tempo_changes"] == [[32, 140.0]]
    assert side["duration_seconds"] == pytest.approx(clock.time_of(60 + 2.75) - start, abs=0.002)


def test_a_later_change_at_the_same_beat_replaces_the_first_and_a_count_in_change_counts(tmp_path):
    """As ``FrameClock.with_tempo``: the Tempo set twice before its beat comes is one change; a change in the
    count-in moves frame 0."""
    clock = FrameClock(120, T0).with_tempo(90, -8).with_tempo(150, 16)
    r = Recorder(tmp_path, {"bpm": 120, "meter": [4, 4], "t0": T0})
    r.tempo(-8, clock.time_of(-8), 90)
    r.melody_on(-12, clock.time_of(-12), 60, 80)  # before the change: the lead-in is counted at 120
    r.melody_off(-9, clock.time_of(-9), 60)
    r.tempo(16, clock.time_of(16), 200)
    r.tempo(16, clock.time_of(16), 150)
    for f in range(0, 32, 4):
        r.chord(f, clock.time_of(f), SYMBOLS[f // 4 % 4], [60, 64, 67], 48, True, 5)
    r.close()
    mid = mido.MidiFile(str(save_session(r.path, tmp_path / "take.mid")))
    meta = conductor(mid)
    assert [(t, m.tempo) for t, m in meta if m.type == "set_tempo"] == [(0, 500_000), (8 * 120, 666_667),
                                                                         (32 * 120, 400_000)]
    assert [t for t, m in meta if m.type == "marker"] == [(f + 16) * 120 for f in range(0, 32, 4)]
    ons = seconds_of_note_ons(mid, MELODY)
    assert ons[0][0] == pytest.approx(clock.time_of(-12) - clock.time_of(-16), abs=0.001)


def test_a_journal_without_t0_places_frame_0_through_the_tempo_change(tmp_path):
    """The first chord comes after the change: frame 0 is where the map says, not where one tempo would."""
    clock = FrameClock(100, T0).with_tempo(140, 8)
    r = Recorder(tmp_path, {"bpm": 100, "meter": [4, 4]})
    r.tempo(8, clock.time_of(8), 140)
    for f in (12, 16, 20):
        r.chord(f, clock.time_of(f), SYMBOLS[f // 4 % 4], [60, 64, 67], 48, True, 5)
    r.close()
    mid = mido.MidiFile(str(save_session(r.path, tmp_path / "take.mid")))
    assert [t for t, m in conductor(mid) if m.type == "marker"] == [f * 120 for f in (12, 16, 20)]


# --- an external clock ------------------------------------------------------------------------------------------


def ramp(beat: float) -> float:
    """90 bpm for 4 beats (the count-in), up to 120 over 8, 120 for 4."""
    return 90.0 if beat < 4 else min(120.0, 90 + 30 * (beat - 4) / 8)


def record_external_clock(directory: Path, monkeypatch, jitter_s: float = 0.0015) -> tuple[Recorder, dict]:
    """A take on an external clock ramping 90 -> 120 bpm with ticks up to 1.5 ms late, recorded as the jam does:
    each frame's grid line and chord at the time the follower gives it one tick before it comes (``_play``), the
    band's notes at it and later (a swing), the player's notes at ticks' arrival times."""
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)  # the ticks' times are made up: the clock is never "lost"
    follower = ClockFollower(bpm=90, count_in_frames=16)
    r = Recorder(directory, {"bpm": 90, "meter": [4, 4], "t0": None})
    t, tick_times = 50.0, []
    for n in range(16 * TICKS_PER_BEAT):
        tick_times.append(t + jitter_s * ((n * 7919) % 13) / 13)
        t += 60.0 / (TICKS_PER_BEAT * ramp(n / TICKS_PER_BEAT))
    follower.start(tick_times[0] - 0.01)
    frames: dict[int, float] = {}
    melody: dict[int, float] = {}
    for n, at in enumerate(tick_times):
        frame = n // 6 - 16
        if n % 6 == 0 and frame >= 0:  # before its tick comes: the scheduler strikes on the prediction
            g = frame
            frames[g] = follower.time_of(g)
            r.grid(g, frames[g])
            if g % 2 == 0:
                r.chord(g, frames[g], SYMBOLS[g // 2 % 4], [60, 64, 67], 36, True, 5, apart=True)
                r.note(g, frames[g], "bass", 36 + g % 12, 80)
                r.note(g, frames[g] + 0.03, "chords", 72, 60)  # a style's late hit
        follower.tick(at)
        if n % 24 == 9:  # the player: a note on every beat, between the frame's ticks
            pitch = 60 + len(melody) % 24
            r.melody_on(max(0, frame), at, pitch, 90)
            r.melody_off(max(0, frame + 1), at + 0.05, pitch)
            melody[pitch] = at
    r.close()
    return r, {"frames": frames, "melody": melody}


def test_an_external_clock_ramp_saves_every_chord_on_its_frames_tick(tmp_path, monkeypatch):
    r, took = record_external_clock(tmp_path, monkeypatch)
    out = save_session(r.path, tmp_path / "take.mid")
    mid = mido.MidiFile(str(out))
    meta = conductor(mid)
    lead = 16
    markers = [(t, m.text) for t, m in meta if m.type == "marker"]
    assert markers == [((g + lead) * 120, SYMBOLS[g // 2 % 4]) for g in sorted(took["frames"]) if g % 2 == 0]
    tick, bass = 0, []
    for msg in mid.tracks[3]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            bass.append(tick)
    assert bass == [(g + lead) * 120 for g in sorted(took["frames"]) if g % 2 == 0]
    tempos = [(t, m.tempo) for t, m in meta if m.type == "set_tempo"]
    assert len(tempos) < len(took["frames"])  # about one a 16th through the ramp, as its tempo changed
    assert len([t for t, _ in tempos if t > (33 + lead) * 120]) <= 3  # its steady end: one tempo, not one a 16th
    assert mido.tempo2bpm(tempos[0][1]) == pytest.approx(90, abs=1)
    assert mido.tempo2bpm(tempos[-1][1]) == pytest.approx(120, abs=1)
    first = seconds_of_note_ons(mid, 2)[0][0]  # the bass note struck at frame 0
    for s, pitch in seconds_of_note_ons(mid, MELODY):  # as far from frame 0 as played, in the count-in too
        assert s - first == pytest.approx(took["melody"][pitch] - took["frames"][0], abs=0.001), pitch
    side = json.loads(sidecar_path(out).read_text())
    assert side["bpm"] == pytest.approx(90, abs=1) and side["tempo_changes"][-1][1] == pytest.approx(120, abs=1)


def test_a_steady_clocks_frames_make_one_tempo_and_a_pause_makes_a_slow_one():
    steady = [(g, 10.0 + g * 0.125) for g in range(200)]  # 120 bpm
    assert _through(steady, 100.0) == [Segment(0, 10.0, pytest.approx(120.0))]
    assert _through([(5, 3.0)], 100.0) == [Segment(5, 3.0, 100.0)]  # one frame: the header's tempo goes on
    paused = steady[:20] + [(g, 30.0 + (g - 20) * 0.125) for g in range(20, 40)]  # stopped for 17.5 s after 19
    segs = _through(paused, 100.0)
    assert [s.frame for s in segs] == [0, 19, 20] and segs[1].bpm < 1
    tmap = TempoMap(segs)
    assert all(abs(tmap.position(t) - g) < 0.25 / 120 for g, t in paused)
    # frames an external clock skipped after a Continue, reckoned back from its new ticks before the last played
    assert _knots([(0, 1.0), (1, 1.1), (3, 1.05), (2, 1.02), (4, 1.3), (4, 1.4)]) == [(0, 1.0), (1, 1.1), (4, 1.3)]


def test_a_pause_on_an_external_clock_keeps_the_frames_after_it_on_their_ticks(tmp_path):
    r = Recorder(tmp_path, {"bpm": 120, "meter": [4, 4]})
    times = {g: 10.0 + g * 0.125 for g in range(8)} | {g: 60.0 + g * 0.125 for g in range(8, 16)}  # 49 s stopped
    for g, at in times.items():
        r.grid(g, at)
        r.chord(g, at, SYMBOLS[g % 4], [60, 64, 67], 36, True, 5)
    r.close()
    mid = mido.MidiFile(str(save_session(r.path, tmp_path / "take.mid")))
    meta = conductor(mid)
    assert [t for t, m in meta if m.type == "marker"] == [g * 120 for g in range(16)]
    assert max(m.tempo for _, m in meta if m.type == "set_tempo") == 0xFFFFFF  # as slow as a MIDI tempo goes


# --- old journals, readers --------------------------------------------------------------------------------------


def write_journal(path: Path, header: dict, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in [{"e": "header", "format": 1, **header}, *events]))
    return path


def old_journal(seed: int, bpm: float, meter: list[int], t0: float | None, first: int) -> tuple[dict, list[dict]]:
    """A journal as every one before tempo lines: melody in and out of the count-in, chords (some played apart,
    with a bass note a little late), a pedal and a bend."""
    rng = random.Random(seed)
    fs = 60 / (bpm * 4)
    base = 5000.0 + seed * 1.2345678 if t0 is None else t0

    def at(f: float) -> float:
        return round(base + f * fs, 6)

    ev = []
    for f in range(-6, 64, 3):
        p = rng.randrange(55, 80)
        ev.append({"e": "on", "f": max(0, f), "t": at(f + rng.uniform(-0.4, 0.4)), "p": p, "v": rng.randrange(40, 120)})
        ev.append({"e": "off", "f": max(0, f + 2), "t": at(f + 2 + rng.uniform(-0.4, 0.4)), "p": p})
    for f in range(first, 64, 4):
        ev.append({"e": "chord", "f": f, "t": at(f), "s": "C" if f % 8 else "G", "p": [52, 55, 60], "b": 36,
                   "on": True, "tok": 5, "x": f > 40})
        if f > 40:
            ev.append({"e": "pn", "f": f, "t": round(at(f) + rng.uniform(0, 0.3) * fs, 6), "c": "bass", "p": 40,
                       "v": 80})
            ev.append({"e": "pf", "f": f + 2, "t": at(f + 2), "c": "bass", "p": 40})
    ev.append({"e": "cc", "f": 10, "t": at(10.3), "c": 64, "v": 127})
    ev.append({"e": "bend", "f": 20, "t": at(20.1), "v": 9000})
    ev.sort(key=lambda e: e["t"])
    return {"bpm": bpm, "meter": meter, "t0": t0}, ev


# (journal, sha256 of the MIDI file saved before tempo maps, sidecar bpm, duration, lead-in bars)
OLD_SAVES = [
    ((1, 100.0, [3, 4], 1000.0, 0), "9cd1007ffc817ec5", 100.0, 11.531, 1),
    ((2, 133.7, [4, 4], None, 8), "4b9eca9d4fc083d8", 133.7, 9.132, 1),
    ((3, 87.3, [6, 8], 12345.678901234, 0), "52b8f296d391e852", 87.3, 13.176, 1),
    ((4, 120.0, [4, 4], None, 0), "11a2b6cc606b51f4", 120.0, 10.107, 1),
]


@pytest.mark.parametrize(("journal", "digest", "bpm", "duration", "lead_in"), OLD_SAVES)
def test_a_journal_without_tempo_lines_saves_exactly_as_before(tmp_path, journal, digest, bpm, duration, lead_in):
    path = write_journal(tmp_path / "old.journal.jsonl", *old_journal(*journal))
    out = save_session(path, tmp_path / "old.mid")
    assert hashlib.sha256(out.read_bytes()).hexdigest()[:16] == digest
    side = json.loads(sidecar_path(out).read_text())
    assert (side["bpm"], side["duration_seconds"], side["lead_in_bars"]) == (bpm, duration, lead_in)
    assert "tempo_changes" not in side


def test_a_bad_tempo_line_is_skipped_and_said(tmp_path):
    path = write_journal(tmp_path / "x.journal.jsonl", {"bpm": 120, "t0": 0.0},
                         [{"e": "tempo", "f": 8, "t": 1.0, "bpm": 0}, {"e": "grid", "f": 3},
                          {"e": "tempo", "f": 16, "t": 2.0, "bpm": 60.0}])
    journal = read_journal(path)
    assert [e["e"] for e in journal.events] == ["tempo"] and len(journal.problems) == 2
    assert "tempo event field 'bpm' is 0" in journal.problems[0]


def test_the_lead_sheet_and_the_melody_reader_read_a_take_with_a_tempo_change_on_its_grid(tmp_path):
    r, _, _ = record_tempo_change(tmp_path)
    out = save_session(r.path, tmp_path / "take.mid")
    sheet = read_leadsheet(out)
    assert sheet.bpm == 100 and sheet.meter == (4, 4)
    assert sheet.chords[:-1] == [(0, None)] + [((f + 16) * 120, SYMBOLS[f // 4 % 4]) for f in range(0, 64, 4)]
    assert sheet.chords[-1][1] is None  # the take's end
    melody = read_melody(out)
    assert melody.bpm == 100  # the first tempo; the frames come from the ticks
    ons = sorted(on for on, _, p, _ in melody.notes if p >= 70)
    assert ons == [f + 1.5 + 16 for f in range(0, 64, 4)]


# --- the jam journals what the file needs ----------------------------------------------------------------------


def test_the_jam_journals_its_tempo_changes_and_an_external_clocks_frames(tiny_bundle, tmp_path, monkeypatch):
    r = Recorder(tmp_path, {"bpm": 200, "meter": [4, 4]})
    session = JamSession(OnnxPolicy(load_bundle(tiny_bundle)), JamSettings(bpm=200, count_in_bars=0), [],
                         recorder=r)
    session.clock = FrameClock.starting_now(200, 0)
    beat = session.set_tempo(100)
    follower = ClockFollower(bpm=120)
    session.clock = follower
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    follower.start(9.99)
    for n in range(13):
        follower.tick(10.0 + n * 60 / (24 * 120))
    session._play(0)  # noqa: SLF001 - the scheduler's step, without its thread
    session._play(1, strike=False)  # noqa: SLF001 - a frame whose time had passed: on the grid all the same
    r.close()
    lines = [e for e in read_journal(r.path).events if e["e"] in ("tempo", "grid")]
    assert lines[0] == {"e": "tempo", "f": beat, "t": lines[0]["t"], "bpm": 100.0}
    assert [(e["e"], e["f"]) for e in lines[1:]] == [("grid", 0), ("grid", 1)]
    assert lines[1]["t"] == pytest.approx(10.0, abs=1e-6) and lines[2]["t"] == pytest.approx(10.125, abs=1e-6)


def test_a_replay_plays_a_tempo_change_at_its_own_speed_and_keeps_the_waterfall_on_its_bars(tmp_path):
    """The replay reads the saved tempo map: seconds where mido places them, and frames back from seconds."""
    from app.gui.replay import load_replay

    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100), time=0),
                                      mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(140), time=8 * 480)]))
    melody = mido.MidiTrack([mido.MetaMessage("track_name", name="Melody")])
    for pitch, rest in ((60, 0), (62, 7 * 480), (64, 0)):  # a beat each, on beats 0, 8 (the change) and 9
        melody += [mido.Message("note_on", note=pitch, velocity=80, time=rest),
                   mido.Message("note_off", note=pitch, velocity=0, time=480)]
    mid.tracks.append(melody)
    path = tmp_path / "ramp.mid"
    mid.save(path)
    expected = [t for t, msg in _timed(path) if msg.type == "note_on"]
    replay = load_replay(path)
    ons = [e[0] for e in replay.events if e[1] == "on"]
    assert ons == pytest.approx(expected, abs=1e-6) and ons == pytest.approx([0.0, 4.8, 4.8 + 60 / 140], abs=1e-6)
    assert replay.bpm == pytest.approx(100)
    assert replay.tempo.frame_at(4.8) == pytest.approx(32.0) and replay.tempo.frame_at(4.8 + 60 / 140) == \
        pytest.approx(36.0)


def _timed(path):
    """(seconds, message) as mido itself plays the file, through its tempo changes."""
    t = 0.0
    for msg in mido.MidiFile(path):
        t += msg.time
        yield t, msg
