"""MIDI clock: the jam's own clock changing tempo at a beat, an external clock followed (tempo, ramps, jumps,
Start / Stop / Continue / Song Position Pointer, a clock that goes quiet), the jam's clock sent out; end to end
over real rtmidi on JACK: a second client's clock ramping 90 -> 120 -> 90 bpm, and the chords' onsets at a
receiving client on its beats."""

from __future__ import annotations

import math
import threading
import time

import pytest
import rtmidi
from jack_helpers import Keyboard, Synth, unique, wait_until

from app.cli import main
from app.engine.bundle import load_bundle
from app.engine.clock import FrameClock
from app.engine.follow import TICKS_PER_BEAT, ClockFollower
from app.engine.live import JamSession, JamSettings
from app.engine.performer import MidiSink
from app.engine.planner import PlanSettings
from app.engine.policy import OnnxPolicy
from app.midi import MidiOutput, NoteEvent
from app.midi.clock import ClockInput, ClockSender

# --- the jam's own clock -----------------------------------------------------------------------------------


def test_a_tempo_change_starts_at_its_frame_and_leaves_the_frames_before_it_alone():
    clock = FrameClock(120, 10.0)  # a frame is 0.125 s
    faster = clock.with_tempo(240, 8)
    assert [faster.time_of(f) for f in (0, 4, 8)] == [clock.time_of(f) for f in (0, 4, 8)]
    assert faster.time_of(12) == pytest.approx(11.0 + 4 * 0.0625)
    assert faster.position(faster.time_of(13.5)) == pytest.approx(13.5)
    assert faster.bpm_at(10.5) == 120 and faster.bpm_at(11.5) == 240
    again = faster.with_tempo(60, 4)  # a change before an earlier one replaces it
    assert again.time_of(8) == pytest.approx(10.5 + 4 * 0.25) and again.bpm_at(100) == 60
    with pytest.raises(ValueError):
        clock.with_tempo(0, 4)


def ticks_at(bpm_of_beat, beats: int, t0: float = 100.0) -> list[float]:
    """Tick times from t0 for ``beats`` beats, the tempo a function of the (fractional) beat."""
    times, t = [], t0
    for n in range(beats * TICKS_PER_BEAT):
        times.append(t)
        t += 60.0 / (TICKS_PER_BEAT * bpm_of_beat(n / TICKS_PER_BEAT))
    return times


def ramp(beat: float) -> float:
    """90 bpm for 4 beats, up to 120 over 8, 120 for 4, back down over 8."""
    if beat < 4:
        return 90.0
    if beat < 12:
        return 90 + 30 * (beat - 4) / 8
    if beat < 16:
        return 120.0
    return max(90.0, 120 - 30 * (beat - 16) / 8)


def follow(times: list[float], follower: ClockFollower, jitter=lambda n: 0.0) -> list[float]:
    """Feed the ticks; the prediction error (ms) of every frame's tick, made one tick before it arrives."""
    errors = []
    for n, t in enumerate(times):
        if n % 6 == 0 and n >= 12:
            errors.append((follower.time_of(n / 6 + follower_offset(follower)) - t) * 1000)
        follower.tick(t + jitter(n))
    return errors


def follower_offset(follower: ClockFollower) -> int:
    return follower._origin // 6  # noqa: SLF001 - the first tick after Start is frame -count-in


def test_the_follower_predicts_each_frame_through_a_tempo_ramp_despite_jittery_ticks(monkeypatch):
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)  # the ticks' times are made up: the clock is never "lost"
    times = ticks_at(ramp, 28)
    follower = ClockFollower(bpm=100, count_in_frames=16)
    follower.start(times[0] - 0.01)
    errors = follow(times, follower, jitter=lambda n: 0.0015 * ((n * 7919) % 13) / 13)  # up to 1.5 ms late
    errors = errors[8:]  # the first frames: the tempo is being found
    assert max(abs(e) for e in errors) < 3.0, errors  # a 16th at 120 bpm is 125 ms; a beat's fit keeps it to ms
    assert follower.bpm_at() == pytest.approx(90, abs=1)


def test_a_tempo_jump_is_followed_within_a_few_ticks(monkeypatch):
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    times = ticks_at(lambda beat: 90.0 if beat < 4 else 140.0, 8)
    follower = ClockFollower(bpm=90)
    follower.start(times[0] - 0.01)
    errors = follow(times, follower)
    after = errors[(4 * 24 + 12) // 6 - 2:]  # from half a beat after the jump
    assert follower.jumps >= 1 and max(abs(e) for e in after) < 1.0, after
    assert follower.bpm_at() == pytest.approx(140, abs=0.5)


def test_start_stop_continue_and_song_position_move_the_frames_only_forward(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    follower = ClockFollower(bpm=120, count_in_frames=0, bar_frames=16)
    told: list[str] = []
    follower.listeners.append(lambda what, t: told.append(what))
    period = 60 / (24 * 120)
    t = 1.0
    for _ in range(24):  # clock while stopped: the tempo is known before Start, the position is not moving
        follower.tick(t)
        t += period
    assert follower.time_of(0) == math.inf and follower.position(t) == 0
    assert follower.bpm_at() == pytest.approx(120)
    follower.start(t - period / 2)
    assert follower.time_of(0) == math.inf  # frame 0 is the first tick after Start: not predicted
    for _ in range(6 * 5):  # frames 0..4
        follower.tick(t)
        t += period
    assert follower.time_of(0) == pytest.approx(1.0 + 24 * period)
    assert follower.time_of(5) == pytest.approx(t)  # predicted: the next tick's time
    follower.stop(t - period / 2)
    assert told == ["start", "stop"]
    assert follower.time_of(5) == math.inf and follower.nearest_frame(t + 5) == 5  # paused: frames wait
    t += 2.0
    follower.cont(t - period / 2)
    follower.tick(t)
    assert follower.time_of(5) == pytest.approx(t) and follower.time_of(4) < t - 2  # resumes where it stopped
    for _ in range(5):
        follower.tick(t := t + period)
    follower.stop(t)
    follower.song_position(4)  # the song jumps to its second beat: the next frame with that bar phase is 20
    t += 1.0
    follower.cont(t - period / 2)
    follower.tick(t)
    assert follower.time_of(20) == pytest.approx(t)
    assert follower.time_of(19) < t and follower.time_of(7) < t  # the frames in between are over: not struck
    now[0] = t + 0.001
    assert follower.time_of(21) == pytest.approx(t + 6 * period)
    now[0] = t + 4 * period  # the clock went quiet (no Stop): the jam waits for it
    assert follower.time_of(21) == math.inf
    assert told == ["start", "stop", "continue", "stop", "continue"]


def test_raw_clock_bytes_drive_the_follower_and_bad_settings_are_refused():
    follower = ClockFollower()
    assert follower.message([0xF2, 0x10, 0x01], 0.0) and follower._song == (0x10 | 1 << 7) * 6  # noqa: SLF001
    assert follower.message([0xFA], 0.0) and follower.running
    assert follower.message([0xF8], 0.01) and follower.ticks == 1
    assert follower.message([0xFC], 0.02) and not follower.running
    assert not follower.message([0x90, 60, 100], 0.03)
    with pytest.raises(ValueError):
        ClockFollower(bpm=0)


# --- the clock sent out ----------------------------------------------------------------------------------------


class FakeOut:
    """A MidiOutput's clock side: what was sent, when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    def realtime(self, status: int) -> bool:
        self.sent.append((time.monotonic(), status))
        return True

    def song_position(self, sixteenths: int) -> bool:
        self.sent.append((time.monotonic(), 0xF2))
        return True


def test_clock_out_ticks_24_to_the_beat_starts_at_frame_0_and_a_tempo_change_lands_on_a_beat():
    box = {"clock": FrameClock.starting_now(240, count_in_beats=2)}
    out = FakeOut()
    sender = ClockSender([out], lambda: box["clock"])
    sender.start()
    time.sleep(0.8)  # into frame ~ 5
    beat = (math.floor(box["clock"].position(time.monotonic()) / 4) + 1) * 4
    box["clock"] = box["clock"].with_tempo(120, beat)
    time.sleep(1.0)
    sender.stop()
    statuses = [s for _, s in out.sent]
    assert statuses[-1] == 0xFC and statuses.count(0xFA) == 1 and 0xF8 in statuses[:statuses.index(0xFA)]
    start = statuses.index(0xFA)
    assert statuses[start + 1] == 0xF8  # the first tick after Start is frame 0
    clock = box["clock"]
    ticks = [t for t, s in out.sent[start + 1:] if s == 0xF8]
    for c, t in enumerate(ticks):  # each tick at its time on the clock with the change: 240 bpm, then 120
        assert abs(t - clock.time_of(c / 6)) < 0.008, (c, t - clock.time_of(c / 6))
    assert len(ticks) > 6 * beat + 24  # more than a beat of ticks after the change went out
    assert sender.ticks == statuses.count(0xF8)


def test_a_jam_changes_tempo_at_the_next_beat(tiny_bundle):
    session = JamSession(OnnxPolicy(load_bundle(tiny_bundle)), JamSettings(bpm=200, count_in_bars=0), [])
    session.clock = old = FrameClock.starting_now(200, 0)
    beat = session.set_tempo(100)
    assert beat % 4 == 0 and old.time_of(beat) > time.monotonic() - 0.01
    assert session.clock.time_of(beat) == old.time_of(beat)
    assert session.clock.time_of(beat + 4) - session.clock.time_of(beat) == pytest.approx(0.6)
    session.clock = ClockFollower()
    assert session.set_tempo(150) is None  # an external clock's tempo is its source's


# --- end to end on JACK ----------------------------------------------------------------------------------------


class StampingReceiver:
    """Another JACK client whose callback stamps every message with ``time.monotonic()`` on arrival."""

    def __init__(self, client: str) -> None:
        self.name = f"{client}:midi"
        self.got: list[tuple[float, list[int]]] = []
        self.rt = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client, 8192)
        self.rt.ignore_types(True, False, True)
        self.rt.set_callback(lambda msg, _: self.got.append((time.monotonic(), msg[0])))
        self.rt.open_virtual_port("midi")

    def close(self) -> None:
        self.rt.cancel_callback()
        self.rt.close_port()
        self.rt.delete()


def play_clock(source: Keyboard, bpm_of_beat, beats: int, grid: list[float], start: bool) -> None:
    """Send Start (or Continue) and ``beats`` beats of ticks; every 6th tick's send time goes into ``grid``."""
    source.send([0xFA if start else 0xFB])
    t = time.monotonic() + 0.002
    for n in range(beats * TICKS_PER_BEAT):
        while (left := t - time.monotonic()) > 0:
            time.sleep(left if left < 0.002 else left - 0.001)
        now = time.monotonic()
        source.send([0xF8])
        if n % 6 == 0:
            grid.append(now)
        t += 60.0 / (TICKS_PER_BEAT * bpm_of_beat(n / TICKS_PER_BEAT))


def test_chords_land_on_an_external_clocks_beats_through_a_ramp_and_a_stop(jack, tiny_bundle):
    source = Keyboard(unique("drum-machine"), "clock")
    receiver = StampingReceiver(unique("synth"))
    settings = JamSettings(bpm=90, count_in_bars=1, plan=PlanSettings(lookahead_beats=1, commit_beats=1,
                                                                      listen_beats=0, seed=4, temperature=1.5))
    follower = ClockFollower.for_jam(settings)
    clock_in = ClockInput(source.name, follower, api="JACK")
    out = MidiOutput(receiver.name, api="JACK")
    session = JamSession(OnnxPolicy(load_bundle(tiny_bundle)), settings, [MidiSink(out)], ports=[out, clock_in])
    grid: list[float] = []
    try:
        session.start(follower)
        for _ in range(24):  # the drum machine's clock runs while it is stopped: nothing plays
            source.send([0xF8])
            time.sleep(60 / (24 * 90))
        assert not receiver.got and follower.ticks > 0

        def melody():  # the player: a note on every other beat, on the external grid, once frame 0 has come
            k = 0
            while not stop_melody.is_set():
                if follower.running and len(session.played) > k * 8:
                    session.on_note(NoteEvent(time.monotonic(), "on", 60 + k % 8, 90, 0))
                    session.on_note(NoteEvent(time.monotonic() + 0.05, "off", 60 + k % 8, 0, 0))
                    k += 1
                time.sleep(0.01)

        stop_melody = threading.Event()
        player = threading.Thread(target=melody, daemon=True)
        player.start()
        play_clock(source, ramp, 28, grid, start=True)  # 4 count-in beats at 90, then the ramp up and down
        source.send([0xFC])
        stopped_at = time.monotonic()
        time.sleep(0.6)
        paused = [(t, m) for t, m in receiver.got if t > stopped_at + 0.02]
        resumed_grid: list[float] = []
        play_clock(source, lambda beat: 90.0, 4, resumed_grid, start=False)
        source.send([0xFC])
        stop_melody.set()
        player.join()
        time.sleep(0.1)
        summary = session.stop()
    finally:
        clock_in.close()
        out.close()
        receiver.close()
        source.unplug()
    ons = [t for t, m in receiver.got if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0]
    assert len(ons) >= 8 and summary["chords"] >= 4, summary
    frames = grid + resumed_grid

    def error_ms(t: float) -> float:
        return 1000 * (t - min(frames, key=lambda g: abs(g - t)))

    errors = sorted(error_ms(t) for t in ons)
    # JACK's test period is 5.3 ms: the clock in and the chords out each wait up to one; a frame is 125-167 ms,
    # so a jam on its own 90 bpm clock would be tens of ms off the ramp within a beat
    assert errors[len(errors) // 2] < 12 and abs(errors[0]) < 25 and errors[-1] < 25, errors
    assert len(session.played) >= len(frames) - 16 - 2, (len(session.played), len(frames))  # every 16th, less count-in
    assert not [m for _, m in paused if m[0] & 0xF0 == 0x90 and m[2] > 0], "nothing starts while stopped"
    sounding: dict = {}
    for t, m in receiver.got:
        if t <= stopped_at + 0.3 and len(m) == 3 and m[0] & 0xF0 in (0x80, 0x90):
            key = (m[0] & 0x0F, m[1])
            sounding[key] = sounding.get(key, 0) + (1 if m[0] & 0xF0 == 0x90 and m[2] > 0 else -1)
    assert not {k: v for k, v in sounding.items() if v > 0}, "Stop released the chord"
    assert any(t > resumed_grid[0] for t in ons), "the chords came back with Continue"


def test_the_jam_sends_its_clock_to_a_port(jack, tiny_bundle):
    synth = Synth(unique("drums"))
    out = MidiOutput(synth.name, api="JACK")
    session = JamSession(OnnxPolicy(load_bundle(tiny_bundle)), JamSettings(bpm=240, count_in_bars=1), [])
    session.clock_out = [out]
    try:
        session.start()
        wait_until(lambda: len(session.played) >= 8, 10)
        summary = session.stop()
    finally:
        out.close()
    got = [m[0] for m in synth.wait_for(10) if len(m) == 1]
    synth.unplug()
    assert summary["frames"] >= 1
    assert got.count(0xFA) == 1 and got[-1] == 0xFC
    start = got.index(0xFA)
    assert got[:start].count(0xF8) >= 90  # the count-in bar (96 ticks) before Start, less the first moments
    assert got[start + 1:-1].count(0xF8) >= 7 * 6  # frame 0 to frame 7 (the eighth played): six ticks a frame


def test_bad_clock_options_are_one_line_errors(capsys, jack):
    assert main(["jam", "--in", "virtual", "--clock-in", " "]) == 2
    assert main(["jam", "--in", "virtual", "--clock-in", "virtual", "--clock-out", "virtual"]) == 2
    assert main(["jam", "--in", "virtual", "--midi-api", "JACK", "--clock-in", "no-such:clock"]) == 2
    assert main(["jam", "--in", "virtual", "--midi-api", "JACK", "--clock-out", "no-such:drums"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("comper: error: ") for line in err), err
    assert "--clock-in ' '" in err[0] and "--clock-out with --clock-in" in err[1]
    assert "'no-such:clock'" in err[2] and "'no-such:drums'" in err[3]


def test_comper_jam_follows_the_clock_sent_to_its_virtual_clock_port(jack, tiny_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMPER_SESSIONS", str(tmp_path))
    receiver = Synth(unique("cli-synth"))
    done: list[int] = []
    argv = ["jam", "--in", "virtual", "--midi-api", "JACK", "--out", receiver.name, "--clock-in", "virtual",
            "--model", str(tiny_bundle), "--teacher", "none", "--seconds", "5", "--count-in", "0", "--listen", "0",
            "--temperature", "1.5", "--record", str(tmp_path / "take.mid")]
    jam = threading.Thread(target=lambda: done.append(main(argv)), daemon=True)
    jam.start()
    drums = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, unique("cli-drums"))
    try:
        assert wait_until(lambda: any(n.endswith(":Comper clock in") for n in drums.get_ports()), 20)
        time.sleep(0.5)  # the model loads after the ports open
        drums.open_port(next(i for i, n in enumerate(drums.get_ports()) if n.endswith(":Comper clock in")))
        drums.send_message([0xFA])
        for _ in range(24 * 6):  # 6 beats at 240 bpm: 24 frames
            drums.send_message([0xF8])
            time.sleep(60 / (24 * 240))
        drums.send_message([0xFC])
        jam.join(15)
    finally:
        drums.close_port()
        drums.delete()
        receiver.unplug()
    out = capsys.readouterr().out
    assert done == [0], out
    assert "clock: following" in out and "Comper clock in (virtual port)" in out
    frames = int(out.split("take.mid (+ ")[1].split(": ")[1].split(" frames")[0])
    assert 20 <= frames <= 25, out  # the frames the clock ticked through, not the 5 s at --bpm
