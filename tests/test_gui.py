"""The desktop app, offscreen: a jam started, played from the computer keyboard and stopped; a model switched
mid-jam at the bar line; sessions saved, listed, renamed, exported, rendered, replayed and deleted; settings that
survive a restart; the no-device start-up; and `comper --demo` end to end. Pure parts (key map, tap tempo, the
view model, settings) are tested without a window."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import mido  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import QSettings, Qt  # noqa: E402

from app.engine import steering  # noqa: E402
from app.engine.vocab import Token  # noqa: E402
from app.gui.computer_keyboard import ComputerKeyboard  # noqa: E402
from app.gui.demo import demo_events  # noqa: E402
from app.gui.devices import light_state  # noqa: E402
from app.gui.metronome import beat_frames  # noqa: E402
from app.gui.settings import AppSettings, load_settings, save_settings  # noqa: E402
from app.gui.transport import TapTempo  # noqa: E402
from app.gui.view_model import COMMITTED, PLAYED, TENTATIVE, ViewState, chord_blocks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = {"bpm": 240.0, "count_in_bars": 1, "metronome": "count-in", "listen_beats": 0.0, "lookahead_beats": 2.0,
        "commit_beats": 1.0}  # a quick jam: frames of 62.5 ms, chords from frame 0


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tiny_bundle, tmp_path_factory) -> Path:
    """A models folder with the tiny bundle and a second card ("tiny-z") on the same graph, to switch to."""
    d = tmp_path_factory.mktemp("gui-models")
    for f in tiny_bundle.parent.glob("tiny-test*"):
        shutil.copy(f, d / f.name)
    card = json.loads((d / "tiny-test.json").read_text())
    card["name"] = "tiny-z"
    (d / "tiny-z.json").write_text(json.dumps(card))
    return d


@pytest.fixture
def env(models_dir, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COMPER_MODELS", str(models_dir))
    monkeypatch.setenv("COMPER_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.setenv("COMPER_SETTINGS", str(tmp_path / "never-used.ini"))  # the window gets its own store
    return tmp_path


@pytest.fixture
def make_window(qtbot, env):
    """``make(**settings)``: a shown window on a temporary settings file, once its model and synth are ready."""
    from app.gui.main_window import MainWindow

    ini = env / "comper.ini"

    def make(**settings):
        store = QSettings(str(ini), QSettings.Format.IniFormat)
        for k, v in settings.items():
            store.setValue(k, v)
        store.sync()
        w = MainWindow(store=store)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitUntil(lambda: w.is_ready, timeout=20000)
        return w

    return make


def press(qtbot, w, *keys) -> None:
    for k in keys:
        qtbot.keyPress(w.view, k)
        qtbot.keyRelease(w.view, k)


def play_until_heard(qtbot, w, key, pitch) -> None:
    """Hold a key until the jam has the note, then release it."""
    qtbot.keyPress(w.view, key)
    qtbot.waitUntil(lambda: any(p == pitch for p, _, _ in w.jam.snapshot().notes), timeout=5000)
    assert pitch in w.router.held()
    qtbot.keyRelease(w.view, key)
    qtbot.waitUntil(lambda: pitch not in w.router.held(), timeout=2000)


def start(qtbot, w) -> None:
    press(qtbot, w, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: w.jam.state == "running", timeout=20000)


def stop(qtbot, w) -> tuple[dict, Path]:
    with qtbot.waitSignal(w.jam.stopped, timeout=20000) as blocker:
        press(qtbot, w, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: w.jam.state == "idle", timeout=5000)
    return blocker.args


def melody_pitches(midi: Path) -> list[int]:
    mid = mido.MidiFile(str(midi))
    track = next(t for t in mid.tracks if t.name == "Melody")
    return [m.note for m in track if m.type == "note_on" and m.velocity > 0]


# --- the window ----------------------------------------------------------------------------------------------


def test_a_jam_is_started_played_from_the_computer_keyboard_and_stopped(qtbot, make_window):
    w = make_window(**FAST)
    assert w.jam.state == "idle" and w.transport.start_button.text() == "Start"
    start(qtbot, w)
    assert w.transport.start_button.text() == "Stop" and not w.transport.count_in.isEnabled()
    assert w.transport.tempo.isEnabled()  # Comper's own clock: a new tempo takes over at the next beat
    play_until_heard(qtbot, w, Qt.Key.Key_A, 60)  # A = middle C
    play_until_heard(qtbot, w, Qt.Key.Key_D, 64)  # D = E
    press(qtbot, w, Qt.Key.Key_Z)  # an octave down
    play_until_heard(qtbot, w, Qt.Key.Key_A, 48)
    qtbot.waitUntil(lambda: w.jam.snapshot().stats["frames"] >= 16, timeout=10000)
    w._tick_view()
    assert w.view_state is not None and w.view_state.position > 0
    assert w.banner.counter.text().startswith("bar ")
    assert w.banner.key.text().endswith(("major", "minor"))  # the key the steering hears, next to the chord
    summary, saved = stop(qtbot, w)
    assert summary["frames"] >= 16
    assert melody_pitches(saved) == [60, 64, 48]  # the notes played, in order, in the saved file
    assert w.metronome.clicks == 4  # "count-in": one bar of 4/4 clicked, then silence
    assert w.synth.synth.sounding() == set()  # every note-on got its note-off
    assert w.transport.start_button.text() == "Start" and w.transport.tempo.isEnabled()
    assert "GUI stall max" in w.health_text() and w.stall.ticks > 0


def test_the_model_switches_mid_jam_at_the_next_bar_line(qtbot, make_window):
    w = make_window(**FAST)
    assert w.transport.current_model().endswith("tiny-test.json")  # the default: the first playable bundle
    start(qtbot, w)
    qtbot.waitUntil(lambda: w.jam.snapshot().stats["frames"] >= 4, timeout=10000)
    index = w.transport.model.findData(str(Path(os.environ["COMPER_MODELS"]) / "tiny-z.json"))
    assert index >= 0
    seen = []

    def switched() -> bool:
        snap = w.jam.snapshot()
        seen.append((snap.position, snap.model))
        return snap.model == "tiny-z"

    with qtbot.waitSignal(w.jam.model_switched, timeout=10000) as blocker:
        w.transport.model.setCurrentIndex(index)
        w.transport.model.activated.emit(index)  # as if picked in the list
    name, frame = blocker.args
    assert name == "tiny-z" and frame % 16 == 0 and frame > 0  # a bar line of 4/4
    qtbot.waitUntil(switched, timeout=10000)
    assert all(pos >= frame - 1 for pos, model in seen if model == "tiny-z")  # not before the bar line
    summary, saved = stop(qtbot, w)
    assert summary["model_switches"] == 1
    assert w.synth.synth.sounding() == set()  # no stuck notes across the switch
    assert w.s.model.endswith("tiny-z.json")  # and the choice is remembered


def test_a_session_is_saved_listed_renamed_exported_rendered_replayed_and_deleted(qtbot, make_window, env):
    w = make_window(**FAST)
    panel = w.sessions_panel
    start(qtbot, w)
    play_until_heard(qtbot, w, Qt.Key.Key_G, 67)
    _, saved = stop(qtbot, w)
    # listed, then selected: a refresh without a selection may land first (both run on the io lane)
    qtbot.waitUntil(lambda: saved.stem in panel.names() and panel.selected() is not None, timeout=5000)
    info = panel.selected()
    assert info is not None and info.midi == saved and info.model == "tiny-test"

    panel.rename(info, "first jam")
    qtbot.waitUntil(lambda: "first jam" in panel.names(), timeout=5000)
    info = panel.selected()
    folder = env / "sessions"
    assert {p.name for p in folder.iterdir()} >= {"first jam.mid", "first jam.mid.session.json",
                                                  "first jam.journal.jsonl"}
    assert not saved.exists()
    side = json.loads((folder / "first jam.mid.session.json").read_text())
    assert side["midi"] == "first jam.mid" and side["journal"].endswith("first jam.journal.jsonl")

    (env / "out").mkdir()
    with qtbot.waitSignal(panel.message, timeout=5000, check_params_cb=lambda m: m.startswith("saved")):
        panel.export_midi(info, env / "out" / "copy")  # the suffix is added
    assert melody_pitches(env / "out" / "copy.mid") == [67]
    with qtbot.waitSignal(panel.message, timeout=30000, check_params_cb=lambda m: m.startswith("rendered")):
        panel.render_wav(info, env / "out" / "take.wav")
    assert (env / "out" / "take.wav").read_bytes()[:4] == b"RIFF"

    panel.replay_requested.emit(info)
    qtbot.waitUntil(lambda: w.view_state is not None and w.view_state.title == "replay: first jam", timeout=5000)
    panel.stop_replay.emit()
    qtbot.waitUntil(lambda: not w.replayer.active, timeout=2000)
    assert w.synth.synth.sounding() == set()

    panel.delete(info)
    qtbot.waitUntil(lambda: "first jam" not in panel.names(), timeout=5000)
    assert not any(folder.iterdir())


def test_a_session_saved_by_an_older_version_is_listed_renamed_and_deleted(tmp_path):
    """Sidecars used to be ``NAME.json``: still read; a rename writes the current name, ``NAME.mid.session.json``."""
    from app.gui.sessions import delete_session, list_sessions, rename_session
    from app.recording import Recorder, sidecar_path

    r = Recorder(tmp_path, {"bpm": 120, "model_name": "old-model"}, stem="old")
    r.melody_on(0, 0.0, 60, 90)
    r.chord(0, 0.0, "C", [60, 64, 67], 48, True, 5)
    midi = r.save(tmp_path / "old.mid")
    sidecar_path(midi).rename(tmp_path / "old.json")
    [info] = list_sessions(tmp_path)
    assert (info.model, info.notes, info.chords) == ("old-model", 1, 1)
    new = rename_session(info, "renamed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renamed.journal.jsonl", "renamed.mid",
                                                          "renamed.mid.session.json"]
    assert (new.model, new.notes) == ("old-model", 1)
    assert json.loads(sidecar_path(new.midi).read_text())["midi"] == "renamed.mid"
    delete_session(new)
    assert not any(tmp_path.iterdir())


def test_settings_survive_a_restart_of_the_window(qtbot, make_window, env):
    w = make_window()
    t, d = w.transport, w.devices_panel
    t.tempo.setValue(133)
    t.meter.setCurrentText("3/4")
    t.count_in.setValue(2)
    t.metronome.setCurrentText("always")
    t.listen.setValue(4)
    t.lookahead.setValue(2.5)
    t.commit.setValue(1.5)
    t.temperature.setValue(0.8)
    t.style.setCurrentIndex(t.style.findData("safe"))
    t.rhythm.setCurrentIndex(t.rhythm.findData("bar"))
    t.key.setCurrentIndex(t.key.findData("Am"))
    z = t.model.findData(str(Path(os.environ["COMPER_MODELS"]) / "tiny-z.json"))
    t.model.setCurrentIndex(z)
    t.model.activated.emit(z)
    qtbot.waitUntil(lambda: w.s.model.endswith("tiny-z.json"), timeout=5000)  # the card is read off the GUI thread
    press(qtbot, w, Qt.Key.Key_X)  # octave up
    d.programs["chords"].setCurrentIndex(11)  # Vibraphone
    d.volumes["bass"].setValue(40)
    d.synth_on.setChecked(False)
    d.select_output("Some Synth")  # not plugged in: remembered anyway
    w.close()

    w2 = make_window()
    t2, d2 = w2.transport, w2.devices_panel
    assert (t2.tempo.value(), t2.meter.currentText(), t2.count_in.value(), t2.metronome.currentText()) == (
        133, "3/4", 2, "always")
    assert (t2.listen.value(), t2.lookahead.value(), t2.commit.value(), t2.temperature.value()) == (4, 2.5, 1.5, 0.8)
    assert t2.current_model().endswith("tiny-z.json")
    assert w2.keys.octave == 5 and w2.s.octave == 5
    assert d2.programs["chords"].currentIndex() == 11 and w2.synth.synth.programs[1] == 11
    assert d2.volumes["bass"].value() == 40 and not d2.synth_on.isChecked() and not w2.synth.enabled
    assert d2.output_combo.currentData() == "Some Synth" and "not connected" in d2.output_combo.currentText()
    assert w2.jam_config().settings.meter == (3, 4)
    assert (t2.style.currentData(), t2.rhythm.currentData(), t2.key.currentData()) == ("safe", "bar", "Am")
    assert w2.jam_config().settings.plan.steer == steering.compose("safe", "bar", "Am")
    t2.style.setCurrentIndex(t2.style.findData("off"))  # the raw policy: rhythm and key mean nothing then
    assert not t2.rhythm.isEnabled() and not t2.key.isEnabled()
    assert w2.jam_config().settings.plan.steer == steering.STEER_OFF


def test_with_no_midi_and_no_audio_device_the_app_says_so_and_the_keys_play(qtbot, make_window, monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "comper-no-such-server")  # whatever else runs, no JACK here
    w = make_window()
    qtbot.waitUntil(lambda: "looking for MIDI" not in w.status_text(), timeout=10000)
    status = w.status_text()
    assert "computer keyboard ready" in status
    if w.devices.reason:  # no ALSA sequencer on a headless machine
        assert "no MIDI devices" in status
    if w.synth.synth.state == "silent":  # no sound card
        assert "no audio device" in status and "silent" in status
    qtbot.keyPress(w.view, Qt.Key.Key_A)  # between jams the keys play the synth straight away
    qtbot.waitUntil(lambda: (0, 60) in w.synth.synth.sounding(), timeout=2000)
    qtbot.keyRelease(w.view, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: w.synth.synth.sounding() == set(), timeout=2000)
    qtbot.keyPress(w.view, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: (0, 62) in w.synth.synth.sounding(), timeout=2000)
    qtbot.mouseClick(w.devices_panel.panic, Qt.MouseButton.LeftButton)  # the key is still down: panic ends it
    qtbot.waitUntil(lambda: w.synth.synth.sounding() == set() and w.router.held() == [], timeout=2000)
    qtbot.keyRelease(w.view, Qt.Key.Key_S)  # and its release later changes nothing
    assert w.router.drain() and w.synth.synth.sounding() == set()


def test_a_midi_keyboard_is_picked_by_name_lights_up_and_comes_back_after_unplugging(qtbot, make_window, jack):
    from jack_helpers import Keyboard, Synth, unique

    from app.gui import style

    kb, synth = Keyboard(unique("gui-keys")), Synth(unique("gui-synth"))
    w = make_window()
    qtbot.waitUntil(lambda: kb.name in w.devices.inputs and synth.name in w.devices.outputs, timeout=10000)
    w.devices_panel.select_input(kb.name)
    w.devices_panel.select_output(synth.name)
    qtbot.waitUntil(lambda: w.devices.input is not None and w.devices.input.state == "connected", timeout=5000)
    qtbot.waitUntil(lambda: w.devices.output is not None and w.devices.output.state == "connected", timeout=5000)
    lit = lambda light, colour: (w._tick_health(), light.colour == colour)[1]  # noqa: E731
    assert lit(w.devices_panel.output_light, style.LIGHT_CONNECTED)
    kb.send((0x90, 62, 100))
    qtbot.waitUntil(lambda: 62 in w.router.held(), timeout=2000)
    qtbot.waitUntil(lambda: lit(w.devices_panel.input_light, style.LIGHT_ACTIVE), timeout=2000)
    kb.send((0x80, 62, 0))
    qtbot.waitUntil(lambda: 62 not in w.router.held(), timeout=2000)
    kb.unplug()  # pulled out: noticed by the polling, the light turns red
    qtbot.waitUntil(lambda: w.devices.input.state == "disconnected", timeout=8000)
    qtbot.waitUntil(lambda: lit(w.devices_panel.input_light, style.LIGHT_LOST), timeout=2000)
    kb.plug()  # back: reopened by name
    qtbot.waitUntil(lambda: w.devices.input.state == "connected", timeout=8000)
    kb.send((0x90, 64, 100), (0x80, 64, 0))
    qtbot.waitUntil(lambda: w.router.delivered >= 4, timeout=2000)
    assert (w.s.midi_in, w.s.midi_out) == (kb.name, synth.name)
    kb.unplug()
    synth.unplug()


def test_the_window_fits_1280x720_during_a_demo_jam_with_the_longest_model_description(qtbot, env, monkeypatch):
    """Issue 19: the model box took the model's whole description and the status line its whole text, so the window
    grew past a 1600-pixel screen during ``comper --demo``. Now long texts are elided, whole in their tooltip, and
    the window fits a 1280x720 screen at every moment of a jam."""
    from app.gui.elide import ElidedLabel, plain_text
    from app.gui.main_window import MainWindow

    shipped = [json.loads(p.read_text()).get("description") or "" for p in (REPO / "models").glob("*.json")]
    longest = max((d.splitlines()[0] for d in shipped if d), key=len)
    description = f"{longest} ({longest})"  # longer than any shipped card's
    models = env / "long-models"
    models.mkdir()
    for f in Path(os.environ["COMPER_MODELS"]).glob("tiny-test*"):
        shutil.copy(f, models / f.name)
    card = json.loads((models / "tiny-test.json").read_text())
    (models / "tiny-test.json").write_text(json.dumps(card | {"description": description}))
    monkeypatch.setenv("COMPER_MODELS", str(models))
    store = QSettings(str(env / "fit.ini"), QSettings.Format.IniFormat)
    for k, v in FAST.items():
        store.setValue(k, v)
    w = MainWindow(store=store)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.is_ready, timeout=20000)
    entry = f"{card['name']} — {description}"
    assert w.transport.model.currentText() == entry and w.transport.model.toolTip() == entry

    def fits() -> None:
        hint = w.minimumSizeHint()
        assert hint.width() <= 1280 and hint.height() <= 720, hint
        w.adjustSize()
        assert w.width() <= 1280 and w.height() <= 720, w.size()

    fits()
    assert w.start_jam(demo=True)
    qtbot.waitUntil(lambda: w.jam.state == "running", timeout=20000)
    qtbot.waitUntil(lambda: len(w.jam.session.played) > 24 and w.banner.current.text() not in ("", "—"),
                    timeout=20000)
    qtbot.wait(300)  # the health line and the banner have a jam's texts now
    fits()
    w.resize(1280, 720)
    qtbot.wait(100)
    model = w.transport.model
    assert model.fontMetrics().horizontalAdvance(entry) > model.width(), "the description is cut to fit the box"
    health = w.health_label
    assert isinstance(health, ElidedLabel) and health.is_elided() and health.shown_text().endswith("…")
    assert health.toolTip() == health.text() and "deadline misses" in health.text()
    for label in w.findChildren(ElidedLabel):  # the banner's chord and model, the model note, the soundfont...
        if label.auto_tip:
            assert label.toolTip() == plain_text(label.text())
    assert w.status_label.toolTip() == w.status_label.text()
    with qtbot.waitSignal(w.jam.stopped, timeout=20000):
        w.jam.stop()
    fits()


def test_a_replay_plays_the_sustain_pedal_as_it_was_recorded(tmp_path):
    """The Melody track's controllers (the player's sustain pedal, pitch bend) reach the synth in a replay, at
    their times, between the notes they belong with."""
    from app.gui.replay import load_replay

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                            mido.Message("control_change", control=64, value=127, time=240),
                            mido.Message("note_off", note=60, time=240),
                            mido.Message("pitchwheel", pitch=2048, time=240),
                            mido.Message("control_change", control=64, value=0, time=240)])
    mid.tracks.append(track)
    mid.save(tmp_path / "pedal.mid")
    events = load_replay(tmp_path / "pedal.mid").events
    assert [e[1:] for e in events] == [("on", "melody", 60, 90), ("control", "melody", 0xB0, (64, 127)),
                                       ("off", "melody", 60, 0), ("control", "melody", 0xE0, (0, 0x50)),
                                       ("control", "melody", 0xB0, (64, 0))]
    assert [e[0] for e in events] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_comper_demo_writes_a_screenshot_mid_jam_and_reports_the_stall(env, tmp_path):
    shot = tmp_path / "shot.png"
    e = dict(os.environ, QT_QPA_PLATFORM="offscreen", COMPER_SETTINGS=str(tmp_path / "demo.ini"))
    r = subprocess.run([sys.executable, "-m", "app.cli", "--demo", "--seconds", "3", "--screenshot", str(shot)],
                       cwd=REPO, env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max GUI stall" in r.stdout and "saved" in r.stdout
    assert list((env / "sessions").glob("*.mid"))


@pytest.mark.parametrize("broken", ["nan-weights", "wrong-hash"])
def test_comper_demo_with_a_model_that_cannot_play_ends_in_one_line(nan_bundle, tiny_bundle, tmp_path, broken):
    """A bundle whose weights give NaN (its hash matches) is refused as it loads; one whose hash does not match
    made the demo wait for ever for its model. Either way: one line, status 1, and it ends."""
    models = tmp_path / "models"
    models.mkdir()
    if broken == "nan-weights":
        for f in (nan_bundle, nan_bundle.with_suffix(".onnx")):
            shutil.copy(f, models / f.name)
        reason = f"cannot load tiny-nan: {models / 'tiny-nan.onnx'}: the model gave NaN or inf logits on a short"
    else:
        card = json.loads(tiny_bundle.read_text())
        card.pop("int8", None)
        card["onnx"]["sha256"] = "0" * 64
        (models / "tiny-test.json").write_text(json.dumps(card))
        shutil.copy(tiny_bundle.with_suffix(".onnx"), models / "tiny-test.onnx")
        reason = f"cannot load tiny-test: {models / 'tiny-test.onnx'}: sha256 "
    e = dict(os.environ, QT_QPA_PLATFORM="offscreen", COMPER_MODELS=str(models),
             COMPER_SETTINGS=str(tmp_path / "s.ini"), COMPER_SESSIONS=str(tmp_path / "sessions"))
    r = subprocess.run([sys.executable, "-m", "app.cli", "--demo", "--seconds", "3"], cwd=REPO, env=e,
                       capture_output=True, text=True, timeout=120)
    said = [line for line in r.stderr.splitlines() if line.startswith("comper")]
    assert r.returncode == 1 and len(said) == 1 and said[0].startswith(f"comper: {reason}"), r.stderr[-2000:]


def test_a_planner_fault_mid_jam_stops_it_says_why_and_keeps_the_take(qtbot, make_window):
    from fault_helpers import break_policy

    w = make_window(**FAST)
    start(qtbot, w)
    qtbot.waitUntil(lambda: w.jam.snapshot().stats["chords"] >= 2, timeout=10000)
    said: list[str] = []
    w.jam.failed.connect(said.append)
    with qtbot.waitSignal(w.jam.stopped, timeout=20000) as blocker:
        break_policy(w.jam.session.planner.policy, "nan").arm()
    summary, saved = blocker.args
    assert w.jam.state == "idle" and w.transport.start_button.text() == "Start"
    assert len(said) == 1 and said[0].startswith("the jam stopped at frame ") and "NaN or inf logits" in said[0]
    assert said[0].endswith(f"; the take so far is saved as {saved.name}")
    assert w.statusBar().currentMessage() == said[0], "the reason stays on screen"
    assert w.synth.synth.sounding() == set(), "every note released"
    chords = [m for m in mido.MidiFile(str(saved)).tracks[0] if m.type == "marker"]
    assert len(chords) == summary["chords"] >= 2, "the chords played before the fault are in the take"


def test_comper_demo_ended_by_sigterm_saves_the_jam_and_releases_every_note_at_the_midi_port(env, tmp_path, jack):
    import signal

    from jack_helpers import Synth, unique, wait_until

    from app.recording import find_unfinished

    synth = Synth(unique("gui-out"))
    ini = tmp_path / "demo.ini"
    store = QSettings(str(ini), QSettings.Format.IniFormat)
    for k, v in {**FAST, "midi_out": synth.name}.items():
        store.setValue(k, v)
    store.sync()
    e = dict(os.environ, QT_QPA_PLATFORM="offscreen", COMPER_SETTINGS=str(ini))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--demo", "--seconds", "60"], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: len(synth.sounding()) >= 2, 60), "the demo's chords sound at the MIDI port"
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    time.sleep(0.2)
    left = synth.sounding()
    synth.unplug()
    assert proc.returncode == 0 and not left, (left, out[-2000:])
    assert "saved" in out and list((env / "sessions").glob("*.mid"))
    assert find_unfinished(env / "sessions") == [], "the jam was saved and its journal closed"


def test_the_cli_does_not_need_qt_for_its_commands():
    code = "import sys, app.cli as c; c.build_parser().parse_args(['models']); print('PySide6' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


# --- the parts, without a window -----------------------------------------------------------------------------


def test_the_computer_keyboard_plays_an_octave_and_shifts_without_stuck_notes():
    k = ComputerKeyboard(octave=4)
    K = Qt.Key
    assert [k.press(x) for x in (K.Key_A, K.Key_W, K.Key_J, K.Key_K)] == [60, 61, 71, 72]
    assert k.press(K.Key_A) is None  # already down (key repeat)
    k.shift_octave(-1)
    assert k.release(K.Key_A) == 60  # released at the pitch it started
    assert k.press(K.Key_A) == 48
    assert sorted(k.release_all()) == [48, 61, 71, 72]
    assert k.press(K.Key_Q) is None
    k.octave = 8
    assert k.press(K.Key_A) == 108 and k.press(K.Key_Semicolon) == 124
    assert k.shift_octave(+3) == 8 and k.shift_velocity(+200) == 127


def test_tap_tempo_averages_the_last_taps_and_restarts_after_a_pause():
    tap = TapTempo()
    assert tap.tap(10.0) is None
    assert tap.tap(10.5) == 120.0
    assert tap.tap(11.0) == 120.0 and tap.tap(11.6) == pytest.approx(112.5, abs=0.1)
    assert tap.tap(20.0) is None  # a pause: a new measurement
    assert tap.tap(21.0) == 60.0


def _info(kind: str, chord: int, root: int = 0, pcs=(0, 4, 7), symbol: str = "C") -> Token:
    return Token(0, kind, chord=chord, root=root, quality="maj", symbol=symbol, pitch_classes=tuple(pcs))


def test_the_view_model_splits_chords_by_state_and_finds_the_next_change():
    info = {10: _info("chord_on", 0), 11: _info("chord_hold", 0),
            20: _info("chord_on", 1, 7, (7, 11, 2), "G"), 21: _info("chord_hold", 1, 7, (7, 11, 2), "G")}
    frames = {0: (10, True), 1: (11, True), 2: (11, True), 3: (11, True),  # C: sounded
              4: (20, True), 5: (21, True),  # G: sounding now and promised
              6: (21, False), 7: (21, False),  # G still held in the tentative plan
              8: (3, False),  # silence (no chord info)
              9: (10, False)}  # C again, tentative
    blocks = chord_blocks(frames, 4.5, info)
    assert [(b.symbol, b.start, b.end, b.state, b.onset) for b in blocks] == [
        ("C", 0, 4, PLAYED, True), ("G", 4, 6, COMMITTED, True), ("G", 6, 8, TENTATIVE, False),
        ("C", 9, 10, TENTATIVE, True)]
    assert blocks[0].bass == 36 and all(52 <= n <= 72 for n in blocks[0].notes)
    assert [b.state for b in chord_blocks(frames, 2.0, info)][:1] == [COMMITTED]  # sounding: one solid block
    s = ViewState(4.5, 120, (4, 4), 0, blocks)
    assert s.current().symbol == "G" and s.upcoming().start == 9 and s.beats_until(s.upcoming()) == 2
    assert s.counter() == (1, 2)
    assert ViewState(-5.0, 120, (4, 4), 0).counter() == (0, 2)  # count-in: 2 beats to go
    assert ViewState(37.0, 120, (3, 4), 0).counter() == (4, 1)  # 3/4: bars of 12 frames


def test_settings_fall_back_to_defaults_for_values_that_make_no_sense(tmp_path):
    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    store.setValue("bpm", "fast")
    store.setValue("metronome", "sometimes")
    store.setValue("octave", 42)
    store.setValue("synth_on", "false")
    store.setValue("steer_style", "reckless")
    store.setValue("steer_rhythm", "every third beat")
    store.setValue("steer_key", "H minor")
    notes: list[str] = []
    s = load_settings(store, notes)
    assert (s.jam.bpm, s.metronome, s.octave, s.synth_on) == (100.0, "count-in", 8, False)
    assert (s.steer_style, s.steer_rhythm, s.steer_key) == (steering.DEFAULT_PRESET, "auto", "auto")
    assert "bpm 'fast' is not a float; 100.0 is used" in notes
    assert "Octave 42: must be between 0 and 8; 8 is used" in notes
    s.jam = replace(s.jam, meter=(3, 4))
    save_settings(s, store)
    again = load_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert again == s and again.jam.meter == (3, 4) and AppSettings().jam.meter == (4, 4)


def test_every_gui_knob_is_a_control_of_the_window_with_the_tables_range_and_a_flag_of_jam(qapp):
    """The spin boxes come from the same table as the command-line flags (engine/options.py), so their ranges
    cannot drift apart; the commit follows the lookahead down and stops at it going up (``options.RULES``)."""
    from PySide6.QtWidgets import QSpinBox

    from app.cli import build_parser
    from app.engine import options
    from app.gui.transport import TransportPanel

    t = TransportPanel(AppSettings())
    assert list(t.controls) == [k.name for k in options.GUI_KNOBS]
    jam = build_parser().parse_args(["jam", "--in", "x"])
    for k in options.GUI_KNOBS:
        box = t.controls[k.name]
        assert (box.minimum(), box.maximum(), isinstance(box, QSpinBox)) == (k.lo, k.hi, k.kind is int), k.name
        assert box.value() == getattr(jam, options.dest(k)) or k.name == "commit_beats"  # the same default
    t.lookahead.setValue(2.0)
    assert t.commit.value() == 2.0
    t.commit.setValue(3.0)
    assert t.commit.value() == 2.0 and t.lookahead.value() == 2.0
    s = AppSettings()
    t.tempo.setValue(133)
    t.apply_to(s)
    assert (s.jam.bpm, s.jam.plan.lookahead_beats, s.jam.plan.commit_beats) == (133.0, 2.0, 2.0)


def test_lights_metronome_grid_and_demo_melody():
    assert light_state(None, 0.0, now=100.0) == "off"
    assert light_state("connected", 99.95, now=100.0) == "active"
    assert light_state("connected", 0.0, now=100.0) == "connected"
    assert light_state("disconnected", 99.95, now=100.0) == "disconnected"
    assert beat_frames((4, 4)) == (4, 16) and beat_frames((6, 8)) == (2, 12)
    ev = demo_events(loops=2)
    assert ev[0][1] == "on" and len(ev) == 2 * 2 * 62  # Ode to Joy: 62 notes, an on and an off each
    one = len(ev) // 2
    assert ev[one][0] - ev[0][0] == 256  # the loop is a whole number of bars
    assert all(a[0] <= b[0] for a, b in zip(ev, ev[1:]))


def test_with_drums_in_the_band_the_drummer_counts_in():
    """The count-in bar is the drummer's rim clicks (the downbeat louder) when the band has drums, the metronome's
    wood blocks otherwise; after it, "count-in" mode is silent either way."""
    from app.engine.clock import FrameClock
    from app.engine.drums import SIDE_STICK
    from app.gui.audio import CLICK_ACCENT, CLICK_BEAT, STICKS_VELOCITY, SynthHost
    from app.gui.metronome import Metronome

    class Kit:
        enabled = True

        def __init__(self):
            self.struck: list[tuple[int, int]] = []
            self.synth = self

        def note_on(self, channel, pitch, velocity):
            self.struck.append((pitch, velocity))

        def note_off(self, channel, pitch):
            pass

        click = SynthHost.click
        click_off = SynthHost.click_off

    def count_in(drummer: bool) -> list[tuple[int, int]]:
        kit = Kit()
        metronome = Metronome(kit, lambda: "count-in")
        clock = FrameClock(240.0, time.monotonic() - 0.1)  # the count-in bar and the first frames are due at once
        metronome.start(lambda: clock, (4, 4), 16, drummer=drummer)
        time.sleep(0.3)
        metronome.stop()
        return kit.struck

    sticks, blocks = count_in(True), count_in(False)
    assert sticks == [(SIDE_STICK, STICKS_VELOCITY[True])] + [(SIDE_STICK, STICKS_VELOCITY[False])] * 3
    assert [p for p, _ in blocks] == [CLICK_ACCENT, CLICK_BEAT, CLICK_BEAT, CLICK_BEAT]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_the_qt_binding_does_not_release_none(qapp):
    """PySide6 6.12.0 drops a reference to None on every void call: Python 3.11 then aborts ("none_dealloc")
    after about a thousand painter calls. pyproject pins below it; this catches a binding that does it again."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter

    img = QImage(64, 64, QImage.Format.Format_ARGB32)
    p = QPainter(img)
    before = sys.getrefcount(None)
    for _ in range(200):
        p.setBrush(QColor("#fff"))
        p.drawRect(QRectF(1, 2, 3, 4))
    after = sys.getrefcount(None)
    p.end()
    assert after - before > -50


def test_no_display_is_one_line_not_a_qt_abort(monkeypatch, capsys):
    import sys as _sys

    import app.gui

    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(_sys, "platform", "linux")
    assert app.gui.run([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no display" in err[0] and "QT_QPA_PLATFORM=offscreen" in err[0]
    monkeypatch.setenv("DISPLAY", ":0")
    assert app.gui.no_display_reason() is None


def test_the_band_pickers_come_from_the_table_lock_while_jamming_and_are_saved(qapp, tmp_path):
    """The style picker (and the bass and drum ones) list the choices of ``options.BAND_KNOBS``; what is picked
    goes into the jam's settings and the saved settings; a style another build knew falls back with a note."""
    from app.engine import options
    from app.gui.transport import TransportPanel

    t = TransportPanel(AppSettings())
    assert list(t.band) == ["style", "bass", "drums"]
    for name, box in t.band.items():
        assert tuple(box.itemData(i) for i in range(box.count())) == options.knob(name).choices
        assert box.currentData() == getattr(AppSettings().jam, name)  # pad, root, off: today's sound
    for name, value in (("style", "bossa"), ("bass", "walking"), ("drums", "auto")):
        t.band[name].setCurrentIndex(t.band[name].findData(value))
    s = AppSettings()
    t.apply_to(s)
    assert (s.jam.style, s.jam.bass, s.jam.drums) == ("bossa", "walking", "auto")
    t.set_running("running")
    assert not any(box.isEnabled() for box in t.band.values())
    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    save_settings(s, store)
    again = load_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert (again.jam.style, again.jam.bass, again.jam.drums) == ("bossa", "walking", "auto")
    store.setValue("style", "polka")
    store.sync()
    notes: list[str] = []
    odd = load_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), notes)
    assert odd.jam.style == "pad" and any("polka" in n for n in notes)
    shown = TransportPanel(again)
    assert shown.band["style"].currentData() == "bossa"


def test_the_band_dynamics_range_is_a_control_saved_with_the_settings(qapp, tmp_path):
    """Softest / loudest (``--dynamics-low/high``): two boxes with the table's range, into the jam's settings, saved,
    locked while jamming; a saved value out of range is clamped with a note."""
    from app.engine import options
    from app.gui.transport import TransportPanel

    t = TransportPanel(AppSettings())
    assert list(t.dynamics) == ["dynamics_low", "dynamics_high"]
    for name, box in t.dynamics.items():
        k = options.knob(name)
        assert (box.minimum(), box.maximum(), box.value()) == (k.lo, k.hi, getattr(AppSettings().jam, name))
    t.dynamics["dynamics_low"].setValue(35)
    t.dynamics["dynamics_high"].setValue(100)
    s = AppSettings()
    t.apply_to(s)
    assert (s.jam.dynamics_low, s.jam.dynamics_high) == (35, 100)
    t.set_running("running")
    assert not any(box.isEnabled() for box in t.dynamics.values())
    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    save_settings(s, store)
    again = load_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert (again.jam.dynamics_low, again.jam.dynamics_high) == (35, 100)
    shown = TransportPanel(again)
    assert shown.dynamics["dynamics_high"].value() == 100
    store.setValue("dynamics_high", 500)
    store.sync()
    notes: list[str] = []
    odd = load_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), notes)
    assert odd.jam.dynamics_high == 127 and any("dynamics_high" in n or "Loudest" in n for n in notes)


# --- MIDI clock (tests/test_clock.py has the engine's side) ----------------------------------------------------


def test_clock_out_goes_to_a_virtual_port_and_a_tempo_change_mid_jam_lands_on_a_beat(qtbot, make_window, env, jack):
    import rtmidi

    from app.gui.devices import VIRTUAL_PORT

    w = make_window(**FAST)
    panel = w.devices_panel
    for combo in (panel.input_combo, panel.output_combo, panel.clock_combo, panel.clock_out_combo):
        assert combo.findData(VIRTUAL_PORT) >= 0, "every MIDI picker offers a virtual port of our own"
    assert panel.clock_combo.currentData() == ""  # Comper's own clock by default
    panel.select_clock_out(VIRTUAL_PORT)
    qtbot.waitUntil(lambda: w.devices.clock_out is not None and w.devices.clock_out.state == "connected",
                    timeout=5000)
    got: list[int] = []
    rt = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "gui-drum-machine", 8192)
    rt.ignore_types(True, False, True)
    rt.set_callback(lambda msg, _: got.append(msg[0][0]))
    rt.open_port(next(i for i, n in enumerate(rt.get_ports()) if n.endswith(":Comper clock out")))
    try:
        start(qtbot, w)
        qtbot.waitUntil(lambda: len(w.jam.session.played) >= 8, timeout=10000)
        w.transport.tempo.setValue(120.0)  # the tempo setting, mid-jam
        changes = w.jam.session.clock.changes
        assert len(changes) == 1 and changes[0][0] % 4 == 0 and changes[0][2] == 120.0
        qtbot.waitUntil(lambda: len(w.jam.session.played) >= changes[0][0] + 4, timeout=10000)
        assert w.jam.session.snapshot().bpm == 120.0
        stop(qtbot, w)
        qtbot.waitUntil(lambda: 0xFC in got, timeout=5000)
    finally:
        rt.cancel_callback()
        rt.close_port()
        rt.delete()
    assert got.count(0xFA) == 1 and got.index(0xFA) > 0 and got.count(0xF8) > 6 * 12
    saved = load_settings(QSettings(str(env / "comper.ini"), QSettings.Format.IniFormat))
    assert (saved.clock_out, saved.clock_source, saved.jam.bpm) == (VIRTUAL_PORT, "", 120.0)


def test_a_jam_follows_an_external_clock_picked_in_the_devices_panel(qtbot, make_window, env, jack):
    from jack_helpers import Keyboard, unique

    drums = Keyboard(unique("gui-drums"), "clock")
    w = make_window(**FAST)
    qtbot.waitUntil(lambda: drums.name in w.devices.inputs, timeout=10000)
    w.devices_panel.select_clock_source(drums.name)
    qtbot.waitUntil(lambda: w.devices.clock_in is not None and w.devices.clock_in.state == "connected", timeout=5000)
    try:
        start(qtbot, w)
        assert not w.transport.tempo.isEnabled()  # the tempo is the clock source's
        qtbot.wait(300)
        assert w.jam.session.played == []  # waiting for the source's Start
        drums.send([0xFA])
        for _ in range(24 * 8):  # 8 beats at 150 bpm: the count-in bar, then a bar of frames
            drums.send([0xF8])
            qtbot.wait(16)
        qtbot.waitUntil(lambda: len(w.jam.session.played) >= 12, timeout=5000)
        assert abs(w.jam.session.snapshot().bpm - 150) < 30  # qtbot.wait is coarse: roughly the tempo sent
        # the Tempo box shows the source's tempo, not the settings' (FAST: 240 bpm)
        qtbot.waitUntil(lambda: abs(w.transport.tempo.value() - 150) < 30, timeout=3000)
        drums.send([0xFC])
        summary, saved = stop(qtbot, w)
        assert summary["frames"] >= 12 and saved is not None
    finally:
        drums.unplug()
    kept = load_settings(QSettings(str(env / "comper.ini"), QSettings.Format.IniFormat))
    assert kept.clock_source == drums.name and abs(kept.jam.bpm - 150) < 30  # the next jam starts at the source's
