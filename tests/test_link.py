"""The Ableton Link clock (``app/engine/link.py``): frame times on the session's beat grid, following its tempo."""

from __future__ import annotations

import sys
import time
from importlib.util import find_spec

import pytest
from test_gui import FAST, env, make_window, models_dir, start, stop  # noqa: F401 - the desktop app's fixtures

from app.cli import main
from app.engine.link import LinkClock

if find_spec("link") is not None:
    import link
needs_link = pytest.mark.skipif(find_spec("link") is None,
                                reason="Ableton Link binding (LinkPython-extern) not installed: pip install 'comper[link]'")

TOL = 5e-6  # Link's times are whole microseconds


def wait_until(cond, timeout=3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def grid_time(clock: LinkClock, beat: float) -> float:
    """Monotonic time of the session's ``beat`` (relative to frame 0's bar), as Link says now."""
    state = clock.link.captureAppSessionState()
    return state.timeAtBeat(clock.b0 + beat, clock.quantum) * 1e-6 + clock._offset


@pytest.fixture
def clock():
    if find_spec("link") is None:
        pytest.skip("Ableton Link binding (LinkPython-extern) not installed")
    c = LinkClock(120.0, count_in_beats=1, bar_frames=16)
    yield c
    c.close()


@needs_link
def test_offset_maps_link_clock_to_monotonic(clock):
    us = clock.link.clock().micros()
    assert abs(us * 1e-6 + clock._offset - time.monotonic()) < 0.002


@needs_link
def test_frame_zero_on_a_bar_line_after_count_in(clock):
    assert clock.b0 % clock.quantum == 0
    t0 = clock.time_of(0)
    assert t0 >= time.monotonic() + 0.4  # at least one beat (0.5 s at 120) minus the time the test took
    assert clock.position(t0) == pytest.approx(0.0, abs=1e-6)
    assert clock.nearest_frame(t0 + 0.01) == 0


@needs_link
def test_frames_on_the_beat_grid_and_follow_a_peer(clock):
    tempo = clock.link.captureAppSessionState().tempo()
    for k in range(1, 6):  # frame 4k is beat k
        assert clock.time_of(4 * k) == pytest.approx(grid_time(clock, k), abs=TOL)
    assert clock.time_of(5) - clock.time_of(4) == pytest.approx(15.0 / tempo, abs=TOL)
    peer = link.Link(tempo)
    peer.enabled = True
    try:
        if wait_until(lambda: clock.link.numPeers() > 0):
            state = peer.captureAppSessionState()  # a peer changes the session's tempo
            state.setTempo(90.0, peer.clock().micros())
            peer.commitAppSessionState(state)
        else:  # no peer discovery here: the session changed through the same instance
            state = clock.link.captureAppSessionState()
            state.setTempo(90.0, clock.link.clock().micros())
            clock.link.commitAppSessionState(state)
        assert wait_until(lambda: abs(clock.bpm_at() - 90.0) < 1e-3)  # sent as whole µs per beat
        k = int(clock.position(time.monotonic()) // 4) + 2
        assert clock.time_of(4 * k) == pytest.approx(grid_time(clock, k), abs=TOL)
        assert clock.time_of(4 * k + 1) - clock.time_of(4 * k) == pytest.approx(15.0 / clock.bpm_at(), abs=TOL)
    finally:
        peer.enabled = False


@needs_link
def test_own_tempo_change_lands_at_next_beat_and_keeps_past_frames(clock):
    time.sleep(max(0.0, clock.time_of(0) + 0.6 - time.monotonic()))  # into the jam: frame 0 passed
    now = time.monotonic()
    pos = clock.position(now)
    assert pos > 0
    past = {g: clock.time_of(g) for g in range(0, int(pos) + 1)}
    to_come = {g: clock.time_of(g) for g in range(int(pos) + 1, int(pos) + 12)}
    beat = clock.set_tempo(150.0)
    assert beat % 4 == 0 and beat > pos
    assert clock.bpm_at() == pytest.approx(150.0)
    for g, t in past.items():  # the past stays
        assert clock.time_of(g) == t
    for g in range(int(pos) + 1, beat + 1):  # the rest of the beat and the beat itself keep their times
        assert clock.time_of(g) == pytest.approx(to_come[g], abs=TOL)
    assert clock.time_of(beat + 4) - clock.time_of(beat) == pytest.approx(60.0 / 150.0, abs=TOL)
    assert clock.time_of(beat + 4) == pytest.approx(grid_time(clock, beat // 4 + 1), abs=TOL)
    t = clock.time_of(beat + 2)
    assert clock.position(t) == pytest.approx(beat + 2, abs=1e-4)
    assert clock.closed_frames(now) <= int(pos) + 1


def test_jam_link_without_the_binding_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "link", None)  # as if not installed
    assert main(["jam", "--in", "virtual", "--link", "--seconds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'comper[link]'" in err


def test_jam_link_with_a_midi_clock_is_refused(capsys):
    assert main(["jam", "--in", "virtual", "--link", "--clock-in", "virtual"]) == 2
    assert "--link" in capsys.readouterr().err


@needs_link
def test_devices_panel_offers_link_and_a_jam_runs_on_it(qtbot, request):
    """Devices > Clock > Ableton Link: saved like a port, the jam runs on a LinkClock, its tempo box stays live."""
    from PySide6.QtCore import QSettings

    from app.gui.devices import LINK_CLOCK
    from app.gui.settings import load_settings

    make, tmp = request.getfixturevalue("make_window"), request.getfixturevalue("env")
    w = make(**FAST)
    panel = w.devices_panel
    assert panel.clock_combo.findData(LINK_CLOCK) >= 0
    panel.select_clock_source(LINK_CLOCK)
    qtbot.waitUntil(lambda: w.devices.link is not None, timeout=5000)
    start(qtbot, w)
    clock = w.jam.session.clock
    assert isinstance(clock, LinkClock) and clock.bpm_at() == pytest.approx(240.0, abs=0.01)
    qtbot.waitUntil(lambda: len(w.jam.session.played) >= 8, timeout=15000)
    assert w.transport.tempo.isEnabled()
    w.transport.tempo.setValue(180.0)  # sets the Link session's tempo at the next beat
    qtbot.waitUntil(lambda: abs(clock.bpm_at() - 180.0) < 0.01, timeout=5000)
    state = clock.link.captureAppSessionState()  # the session's tempo changes elsewhere (as a peer's would)
    state.setTempo(132.0, clock.link.clock().micros())
    clock.link.commitAppSessionState(state)
    qtbot.waitUntil(lambda: abs(w.transport.tempo.value() - 132.0) < 0.05, timeout=3000)  # the box shows it
    assert abs(clock.bpm_at() - 132.0) < 0.01  # and did not send its old value back to the session
    stop(qtbot, w)
    kept = load_settings(QSettings(str(tmp / "comper.ini"), QSettings.Format.IniFormat))
    assert kept.clock_source == LINK_CLOCK and kept.jam.bpm == pytest.approx(132.0)
