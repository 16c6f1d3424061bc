"""app.midi against real rtmidi on a JACK dummy server (this kernel has no ALSA sequencer), plus pure parsing.

The session fixture `jack` (conftest.py, tests/jack_helpers.py) starts its own `jackd -d dummy`.
"""

from __future__ import annotations

import os
import time

import mido
import pytest
import rtmidi
from jack_helpers import Keyboard, Synth, unique, wait_until

from app.midi import (
    MidiInput,
    MidiOutput,
    NoteEvent,
    NoteFilter,
    PortError,
    StreamParser,
    available_apis,
    list_ports,
    open_input,
    open_output,
)
from app.midi import ports as ports_mod
from app.midi.ports import match_port

SENTINEL = (0x90, 99, 1)  # a note sent after each bad input: once it arrives, everything before it has arrived

@pytest.fixture
def keyboard(jack):
    kb = Keyboard(unique("testkbd"))
    yield kb
    if kb.rt is not None:
        kb.unplug()


@pytest.fixture
def synth(jack):
    s = Synth(unique("testsynth"))
    yield s
    if s.rt is not None:
        s.unplug()


@pytest.fixture
def listen(keyboard):
    """A MidiInput on the keyboard; `play(*msgs)` sends raw messages plus a sentinel note and returns the
    NoteEvents before the sentinel, once the sentinel has arrived."""
    events: list[NoteEvent] = []
    inputs: list[MidiInput] = []

    def make(**kwargs) -> MidiInput:
        inputs.append(MidiInput(keyboard.name, events.append, api="JACK", **kwargs))
        return inputs[-1]

    def play(*messages) -> list[NoteEvent]:
        events.clear()
        keyboard.send(*messages, SENTINEL)
        assert wait_until(lambda: any(e.pitch == SENTINEL[1] for e in events)), f"sentinel never came: {events}"
        return [e for e in events if e.pitch != SENTINEL[1]]

    yield make, play
    for mi in inputs:
        mi.close()


def brief(events: list[NoteEvent]) -> list[tuple]:
    return [(e.kind, e.pitch, e.velocity, e.channel) for e in events]


def test_jack_lists_other_clients_ports(keyboard, synth):
    found = list_ports("JACK")
    assert found.error is None and found.api == "JACK"
    assert keyboard.name in found.inputs and synth.name in found.outputs
    assert keyboard.name not in found.outputs
    if not os.path.exists("/dev/snd/seq"):
        assert list_ports().api == "JACK"  # no ALSA here: the default falls through to the API that works


def test_virtual_output_round_trip_through_jack(jack):
    backend = mido.Backend("mido.backends.rtmidi", api="UNIX_JACK")
    port_name = unique("comper-out")
    out = MidiOutput(port_name, api="JACK", virtual=True)
    try:
        seen = [n for n in backend.get_input_names() if n.endswith(f":{port_name}")]
        assert len(seen) == 1, backend.get_input_names()
        with backend.open_input(seen[0]) as peer:
            out.note_on(60, 100, channel=3)
            out.note_off(60, 0, channel=3)
            got: list[mido.Message] = []
            assert wait_until(lambda: got.extend(peer.iter_pending()) or len(got) >= 2)
            assert [(m.type, m.note, m.velocity, m.channel) for m in got] == [
                ("note_on", 60, 100, 3), ("note_off", 60, 0, 3)]
        assert out.sounding == [] and out.stats.notes_on == 1 and out.stats.notes_off == 1
    finally:
        out.close()


def test_midi_file_into_virtual_input(jack, tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000))
    track.append(mido.Message("program_change", program=0, time=0))
    track.append(mido.Message("control_change", control=64, value=127, time=0))
    melody = [(60, 90), (62, 80), (64, 100), (65, 70), (67, 110)]
    for i, (pitch, vel) in enumerate(melody):
        track.append(mido.Message("note_on", note=pitch, velocity=vel, time=0 if i == 0 else 24))
        if i % 2:  # both ways a file ends a note: note_off, and note_on with velocity 0
            track.append(mido.Message("note_off", note=pitch, velocity=40, time=48))
        else:
            track.append(mido.Message("note_on", note=pitch, velocity=0, time=48))
    path = tmp_path / "melody.mid"
    mid.save(path)
    expected = []
    for pitch, vel in melody:
        off_vel = 40 if melody.index((pitch, vel)) % 2 else 0
        expected += [("on", pitch, vel, 0), ("off", pitch, off_vel, 0)]

    events: list[NoteEvent] = []
    port_name = unique("comper-in")
    with MidiInput(port_name, events.append, api="JACK", virtual=True) as mi:
        backend = mido.Backend("mido.backends.rtmidi", api="UNIX_JACK")
        seen = [n for n in backend.get_output_names() if n.endswith(f":{port_name}")]
        assert len(seen) == 1, backend.get_output_names()
        with backend.open_output(seen[0]) as player:
            start = time.monotonic()
            for msg in mido.MidiFile(path).play():
                player.send(msg)
            assert wait_until(lambda: len(events) >= len(expected) + 1)
        time.sleep(0.05)
        pedal, *events = events
        assert (pedal.kind, pedal.status, pedal.data, pedal.channel) == ("control", 0xB0, (64, 127), 0)
        assert brief(events) == expected
        assert mi.stats.ignored == 1 and mi.stats.controls == 1  # the program change; the sustain pedal
        times = [e.time for e in events]
        assert times == sorted(times) and times[0] >= start
        length = mido.MidiFile(path).length
        assert times[-1] - times[0] >= 0.5 * length, (times[-1] - times[0], length)


def test_sysex_flood_is_ignored(keyboard, listen):
    make, play = listen
    mi = make()
    control = Synth.__new__(Synth)  # a second listener on the same keyboard that lets SysEx through
    control.rt = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, unique("control"), 4096)
    control.rt.ignore_types(False, False, False)
    control.rt.open_port(control.rt.get_ports().index(keyboard.name))
    control.received = []
    try:
        sysex = (0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7)
        for i in range(1000):
            keyboard.send(sysex)
            if i % 100 == 99:
                time.sleep(0.003)  # rtmidi's JACK ring buffer holds about 1,500 such messages
        got = play((0x90, 60, 100), (0x80, 60, 0))
        assert brief(got) == [("on", 60, 100, 0), ("off", 60, 0, 0)]
        assert mi.stats.ignored == 0 and mi.stats.stray_bytes == 0  # rtmidi dropped them before our parser
        assert wait_until(lambda: sum(m[0] == 0xF0 for m in control.poll()) == 1000), "the flood never went out"
    finally:
        control.unplug()


def test_running_status_through_jack(listen):
    make, play = listen
    make()
    got = play((0x90, 60, 100), (62, 100), (60, 0), (62, 0),  # data bytes only: the 0x90 status runs on
               (0x90, 64), (90,), (0x80, 64, 0))  # a message split across two events
    assert brief(got) == [("on", 60, 100, 0), ("on", 62, 100, 0), ("off", 60, 0, 0), ("off", 62, 0, 0),
                          ("on", 64, 90, 0), ("off", 64, 0, 0)]


def test_note_off_without_note_on_is_dropped(listen):
    make, play = listen
    mi = make()
    assert play((0x80, 70, 0), (0x90, 71, 0)) == []
    assert mi.stats.unmatched_off == 2 and mi.stats.notes_off == 0


def test_velocity_zero_note_on_is_note_off(listen):
    make, play = listen
    mi = make()
    got = play((0x90, 60, 90), (0x90, 60, 0))
    assert brief(got) == [("on", 60, 90, 0), ("off", 60, 0, 0)]
    assert mi.held == [(0, SENTINEL[1])]


def test_channels_1_and_10_mixed(listen):
    make, play = listen
    make()
    got = play((0x90, 60, 100), (0x99, 36, 110), (0x80, 60, 64), (0x89, 36, 0))
    assert brief(got) == [("on", 60, 100, 0), ("on", 36, 110, 9), ("off", 60, 64, 0), ("off", 36, 0, 9)]


def test_channel_filter(listen):
    make, play = listen
    mi = make(channels={0})
    got = play((0x90, 60, 100), (0x99, 36, 110), (0x80, 60, 64), (0x89, 36, 0))
    assert brief(got) == [("on", 60, 100, 0), ("off", 60, 64, 0)]
    assert mi.stats.other_channel == 2


def test_clock_and_active_sensing_are_ignored(keyboard, listen):
    make, play = listen
    mi = make()
    noise = [(0xF8,), (0xFE,)] * 100
    got = play(*noise[:100], (0x90, 60, 100), *noise[100:], (0x80, 60, 0), (0xF8,))
    assert brief(got) == [("on", 60, 100, 0), ("off", 60, 0, 0)]
    assert mi.stats.ignored == 0 and mi.stats.stray_bytes == 0


def test_notes_outside_keyboard_range_are_dropped(listen):
    make, play = listen
    mi = make(key_range=(21, 108))
    got = play((0x90, 0, 100), (0x90, 127, 100), (0x90, 60, 100), (0x80, 0, 0), (0x80, 127, 0), (0x80, 60, 0))
    assert brief(got) == [("on", 60, 100, 0), ("off", 60, 0, 0)]
    assert mi.stats.out_of_range == 4 and mi.stats.unmatched_off == 0


def test_input_port_vanishes_and_returns(keyboard):
    events: list[NoteEvent] = []
    with MidiInput(keyboard.name, events.append, api="JACK") as mi:
        keyboard.send((0x90, 60, 100))
        assert wait_until(lambda: len(events) == 1)
        assert mi.check() == "connected"
        keyboard.unplug()
        assert wait_until(lambda: mi.check() == "disconnected", 3.0)
        assert brief(events) == [("on", 60, 100, 0), ("off", 60, 0, 0)]  # the held note is released
        assert mi.stats.disconnects == 1 and mi.stats.released == 1 and mi.held == []
        assert mi.check() == "disconnected"
        keyboard.plug()
        assert wait_until(lambda: mi.check() == "connected", 3.0)
        assert mi.stats.reconnects == 1 and mi.port_name == keyboard.name
        keyboard.send((0x90, 62, 80))
        assert wait_until(lambda: len(events) == 3)
        assert brief(events[2:]) == [("on", 62, 80, 0)]
    assert mi.state == "closed" and brief(events[3:]) == [("off", 62, 0, 0)]  # close releases held notes


def test_output_owes_note_offs_across_port_loss(synth):
    out = MidiOutput(synth.name, api="JACK")
    try:
        out.note_on(60, 100)
        out.note_on(64, 100)
        assert synth.wait_for(2) == [(0x90, 60, 100), (0x90, 64, 100)]
        synth.unplug()
        assert wait_until(lambda: out.check() == "disconnected", 3.0)
        assert out.owed == [(0, 60), (0, 64)] and out.sounding == []
        out.note_on(67, 100)  # nowhere to go
        out.note_off(60)  # still owed
        assert out.stats.dropped_ons == 1 and out.owed == [(0, 60), (0, 64)]
        synth.plug()
        assert wait_until(lambda: out.check() == "connected", 3.0)
        assert synth.wait_for(2) == [(0x80, 60, 0), (0x80, 64, 0)]
        assert out.owed == [] and out.stats.offs_resent == 2 and out.stats.reconnects == 1
    finally:
        out.close()
    assert out.stats.dropped_offs == 0


def test_output_drops_offs_when_port_never_returns(synth):
    out = MidiOutput(synth.name, api="JACK")
    out.note_on(60, 100)
    out.note_on(61, 100, channel=9)
    synth.unplug()
    assert wait_until(lambda: out.check() == "disconnected", 3.0)
    out.close()
    assert out.state == "closed" and out.stats.dropped_offs == 2 and out.owed == []


def test_panic_ends_every_note(synth):
    with MidiOutput(synth.name, api="JACK") as out:
        out.note_on(60, 100)
        out.note_on(64, 90)
        out.note_on(36, 110, channel=9)
        assert len(synth.wait_for(3)) == 3
        out.panic()
        assert synth.wait_for(10)[3:] == [
            (0x80, 60, 0), (0x80, 64, 0), (0x89, 36, 0),
            (0xB0, 123, 0), (0xB0, 120, 0), (0xB9, 123, 0), (0xB9, 120, 0)]
        assert out.sounding == []
        out.note_off(60)  # already ended by the panic: not sent again
        assert out.stats.stray_offs == 1


def test_close_ends_sounding_notes_and_retrigger_pairs_up(synth):
    out = MidiOutput(synth.name, api="JACK")
    out.note_on(60, 100)
    out.note_on(60, 70)  # the same key again: the first note is ended first
    out.note_on(67, 100, channel=2)
    out.close()
    assert synth.wait_for(5) == [(0x90, 60, 100), (0x80, 60, 0), (0x90, 60, 70), (0x92, 67, 100),
                                 (0x80, 60, 0), (0x82, 67, 0)]
    assert out.stats.retriggers == 1 and out.stats.notes_on == out.stats.notes_off == 3


def test_missing_port_raises_port_error_listing_real_ports(keyboard, synth):
    with pytest.raises(PortError) as info:
        open_input("No Such Keyboard", "JACK", lambda data, t: None)
    msg = str(info.value)
    assert "\n" not in msg and "No Such Keyboard" in msg and repr(keyboard.name) in msg
    with pytest.raises(PortError) as info:
        open_output("No Such Synth", "JACK")
    assert repr(synth.name) in str(info.value)
    with pytest.raises(PortError):
        MidiInput("No Such Keyboard", lambda e: None, api="JACK")


def test_wait_for_port_connects_when_it_appears(jack):
    events: list[NoteEvent] = []
    later = Keyboard.__new__(Keyboard)
    later.client, later.port = unique("latekbd"), "keys"
    later.name = f"{later.client}:{later.port}"
    with MidiInput(later.name, events.append, api="JACK", wait_for_port=True) as mi:
        assert mi.state == "disconnected" and mi.check() == "disconnected"
        later.plug()
        try:
            assert wait_until(lambda: mi.check() == "connected", 3.0)
            later.send((0x90, 60, 100))
            assert wait_until(lambda: len(events) == 1)
        finally:
            later.unplug()


def test_open_port_wrappers_deliver_raw_bytes_with_arrival_times(keyboard):
    got: list[tuple[list[int], float]] = []
    before = time.monotonic()
    port = open_input(keyboard.name, "JACK", lambda data, t: got.append((data, t)))
    try:
        assert port.present() and port.api == "JACK" and not port.virtual
        keyboard.send((0x90, 60, 100), (0xB0, 1, 64))
        assert wait_until(lambda: len(got) == 2)
        assert [d for d, _ in got] == [[0x90, 60, 100], [0xB0, 1, 64]]
        assert before <= got[0][1] <= got[1][1] <= time.monotonic()
    finally:
        port.close()
    assert not port.is_open and not port.present()


# --- no JACK needed -------------------------------------------------------------------------------------------


def test_available_apis_names():
    apis = available_apis()
    assert "JACK" in apis  # the tests above need it; the Linux wheel builds ALSA and JACK in
    assert set(apis) <= {"ALSA", "JACK", "CoreMIDI", "Windows MM"}


def test_list_ports_alsa_without_sequencer_is_no_devices(monkeypatch):
    found = list_ports("ALSA")
    if os.path.exists("/dev/snd/seq"):
        assert found.error is None
        return
    assert found.inputs == [] and found.outputs == [] and found.api == "ALSA"
    assert found.error and "\n" not in found.error and "sequencer" in found.error
    # and when rtmidi itself is asked (no shortcut), its exception still becomes an error string
    monkeypatch.setattr(ports_mod, "_unavailable", lambda api: None)
    found = list_ports("ALSA")
    assert found.inputs == [] and found.error == "ALSA: no MIDI sequencer on this machine"
    with pytest.raises(PortError, match="ALSA"):
        open_input("anything", "ALSA", lambda d, t: None)


def test_list_ports_without_jack_server_is_no_devices(monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "comper-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    found = list_ports("JACK")
    assert (found.inputs, found.outputs, found.error) == ([], [], "JACK: no JACK server is running")


def test_unknown_api_name_is_a_value_error():
    with pytest.raises(ValueError):
        list_ports("BeOS")
    assert list_ports("unix_jack").api == list_ports("jack").api == "JACK"


def test_parser_running_status_and_realtime():
    p = StreamParser()
    assert p.feed([0x90, 60, 100, 62, 100, 0xF8, 64, 0xFE, 0]) == [
        (0x90, 60, 100), (0x90, 62, 100), (0xF8,), (0xFE,), (0x90, 64, 0)]
    assert p.feed([0x80, 60]) == [] and p.feed([0]) == [(0x80, 60, 0)] and p.feed([61, 0]) == [(0x80, 61, 0)]
    assert p.feed([0xC0, 5, 6]) == [(0xC0, 5), (0xC0, 6)]  # one data byte per program change
    assert p.feed([0xF0, 1, 0xF8, 2, 0xF7, 0x90, 1, 2]) == [(0xF8,), (0xF0, 1, 2, 0xF7), (0x90, 1, 2)]
    assert p.stray_bytes == 0
    assert p.feed([0xF3, 1, 62, 100]) == [(0xF3, 1)]  # system common cancels running status
    assert p.stray_bytes == 2
    assert p.feed([0x90, 60, 0x80, 60, 0]) == [(0x80, 60, 0)] and p.stray_bytes == 3  # abandoned half message


def test_note_filter_on_a_raw_stream():
    """What rtmidi's filter would normally stop, when it does not (other backends, other transports)."""
    events: list[NoteEvent] = []
    f = NoteFilter(events.append, key_range=(21, 108))
    f.feed([0xF0, 1, 2, 3, 0xF7, 0xF8, 0xFE, 0xB0, 64, 127, 0xE0, 0, 64], 1.0)
    f.feed([0x90, 60, 100, 0xF8, 64, 90, 60, 0, 0x99, 36, 100, 0x90, 0, 100, 0x80, 64, 10, 70, 0], 2.0)
    controls, events[:] = events[:2], events[2:]
    assert [(e.time, e.kind, e.status, e.data) for e in controls] == [
        (1.0, "control", 0xB0, (64, 127)), (1.0, "control", 0xE0, (0, 64))]  # sustain, pitch bend: passed on
    assert [(e.time, e.kind, e.pitch, e.velocity, e.channel) for e in events] == [
        (2.0, "on", 60, 100, 0), (2.0, "on", 64, 90, 0), (2.0, "off", 60, 0, 0), (2.0, "on", 36, 100, 9),
        (2.0, "off", 64, 10, 0)]
    assert f.stats.ignored == 4 and f.stats.controls == 2  # sysex, clock x2, active sensing
    assert f.stats.out_of_range == 1 and f.stats.unmatched_off == 1
    f.release_all(3.0)
    assert [(e.time, e.kind, e.pitch, e.channel) for e in events[5:]] == [(3.0, "off", 36, 9)]
    assert f.stats.released == 1


def test_match_port_forgives_replug_numbers():
    names = ["Keyboard:Keyboard MIDI 1 28:0", "a2j:Piano [24] (capture): Piano MIDI 1", "Midi Through:Port-0 14:0"]
    assert match_port("Keyboard:Keyboard MIDI 1 20:0", names) == names[0]
    assert match_port("a2j:Piano [20] (capture): Piano MIDI 1", names) == names[1]
    assert match_port("Midi Through:Port-0 14:0", names) == names[2]
    assert match_port("Keyboard", names) is None
    assert match_port("Keyboard:Keyboard MIDI 1 20:0", names + ["Keyboard:Keyboard MIDI 1 32:0"]) is None


def test_all_notes_off_and_all_sound_off_release_the_held_notes_of_their_channel():
    """A keyboard's All Notes Off (CC123) / All Sound Off (CC120) used to be ignored: the thru note kept sounding."""
    events: list[NoteEvent] = []
    f = NoteFilter(events.append)
    f.feed([0x90, 60, 100, 64, 90, 0x91, 67, 80], 1.0)  # 60 and 64 on channel 1, 67 on channel 2
    f.feed([0xB0, 123, 0], 2.0)  # All Notes Off, channel 1
    assert [(e.time, e.kind, e.pitch, e.channel) for e in events[3:]] == [(2.0, "off", 60, 0), (2.0, "off", 64, 0)]
    assert f.held == [(1, 67)]
    f.feed([0xB1, 120, 0], 3.0)  # All Sound Off, channel 2
    assert [(e.time, e.kind, e.pitch, e.channel) for e in events[5:]] == [(3.0, "off", 67, 1)]
    assert f.held == [] and f.stats.all_off == 2 and f.stats.released == 3
    f.feed([0xB0, 123, 0, 0x90, 60, 0], 4.0)  # nothing held: no note-off made up, the late real one is unmatched
    assert len(events) == 6 and f.stats.unmatched_off == 1
    f.feed([0x90, 62, 100, 0xB0, 7, 100, 64, 127], 5.0)  # volume, sustain: passed on, the note stays
    assert f.held == [(0, 62)] and f.stats.controls == 2 and f.stats.all_off == 3
    assert [(e.kind, e.data) for e in events[-2:]] == [("control", (7, 100)), ("control", (64, 127))]


def test_controllers_pitch_bend_and_pressure_pass_the_filter_as_control_events():
    """Sustain, soft pedal, mod wheel, pitch bend and pressure used to be dropped as ``ignored``: a pianist's
    melody sounded dry. They now reach the callback in order with the notes; program changes and the channel mode
    messages (the keyboard's own setup) stay dropped, and the channel filter applies to them as to notes."""
    events: list = []
    f = NoteFilter(events.append, channels={0, 1})
    f.feed([0x90, 60, 100, 0xB0, 64, 127, 67, 100, 1, 30], 1.0)  # note, sustain down, soft pedal, mod wheel (running)
    f.feed([0xE1, 0x10, 0x50, 0xD0, 40, 0xA0, 60, 55], 1.5)  # pitch bend (channel 2), channel and poly pressure
    f.feed([0x80, 60, 0, 0xB0, 64, 0], 2.0)  # note off, sustain up
    f.feed([0xC0, 5, 0xB0, 122, 0, 0xB0, 126, 1, 0xB3, 64, 127, 0xE5, 0, 64], 3.0)  # dropped: see below
    got = [(e.time, e.kind, getattr(e, "status", None), getattr(e, "data", e.pitch if e.kind != "control" else None),
            e.channel) for e in events]
    assert got == [
        (1.0, "on", None, 60, 0), (1.0, "control", 0xB0, (64, 127), 0), (1.0, "control", 0xB0, (67, 100), 0),
        (1.0, "control", 0xB0, (1, 30), 0), (1.5, "control", 0xE0, (0x10, 0x50), 1),
        (1.5, "control", 0xD0, (40,), 0), (1.5, "control", 0xA0, (60, 55), 0),
        (2.0, "off", None, 60, 0), (2.0, "control", 0xB0, (64, 0), 0)]
    assert events[4].message(0) == (0xE0, 0x10, 0x50), "re-channelled for the melody part"
    assert f.stats.controls == 7 and f.stats.notes_on == 1 and f.stats.notes_off == 1
    assert f.stats.ignored == 3  # the program change, local control off, mono mode
    assert f.stats.other_channel == 2  # sustain on channel 4, pitch bend on channel 6
    assert f.held == []
