"""The window: transport on top, the view (banner, waterfall, keys) in the middle, devices and sessions at the
side, the device summary and the health line in the status bar.

Threads: the GUI thread only draws and reacts. MIDI (reader threads), the clock and planning (the engine's
threads), the synth (called from those and from the note router) and every slow job (``Background`` lanes) run
elsewhere; the view polls ``snapshot()`` on a timer.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QByteArray, QEventLoop, QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMainWindow, QSplitter, QStatusBar, QTabWidget, QVBoxLayout, QWidget

from ..engine import steering
from ..engine.bundle import resolve_model
from ..recording import Recovery
from ..session import recover_unfinished, sessions_dir
from . import style
from .audio import MixSink, SynthHost
from .background import Background
from .computer_keyboard import KEY_HELP, ComputerKeyboard, KeyboardFilter
from .demo import DemoPlayer
from .devices import LINK_CLOCK, DevicesPanel, MidiDevices, PortSink, light_state
from .elide import ElidedLabel
from .jam import IDLE, RUNNING, STARTING, JamConfig, JamController, new_seed
from .metronome import Metronome
from .models import ModelCache, ModelEntry, default_model, list_models, read_entry
from .replay import ReplayPlayer, load_replay
from .router import NoteRouter
from .sessions import SessionInfo, SessionsPanel
from .settings import PARTS, AppSettings, load_settings, open_store, save_settings
from .stall import StallMeter
from .transport import TransportPanel
from .view_model import ViewState, from_snapshot
from .waterfall import ChordBanner, WaterfallView


class MainWindow(QMainWindow):
    ready = Signal()  # the model is loaded and the synth probed: a jam starts at once

    def __init__(self, store: QSettings | None = None, demo: bool = False) -> None:
        super().__init__()
        self.setWindowTitle("Comper")
        self.store = store if store is not None else open_store()
        self.settings_notes: list[str] = []  # saved values that were out of range, and what is used instead
        self.s: AppSettings = load_settings(self.store, self.settings_notes)
        self.demo_mode = demo
        self.is_ready = False
        self._pending_startup = {"model", "synth"}
        self.entries: list[ModelEntry] = []
        self.view_state: ViewState | None = None
        self.last_stats: dict = {}
        self._status = {"midi": "looking for MIDI devices…", "synth": "starting the synth…"}
        self._out_count = 0
        self._out_flash = 0.0

        # --- the parts that make sound (no widgets) ----------------------------------------------------------
        self.bg = Background(self)
        s = self.s
        self.synth = SynthHost(s.soundfont, {p: s.program(p) for p in PARTS}, {p: s.volume(p) for p in PARTS},
                               enabled=s.synth_on)
        self.mix = MixSink(self.synth)
        self.router = NoteRouter(idle_sinks=[self.mix])
        self.devices = MidiDevices(self.bg, self.router, self)
        self.port_sink = PortSink(self.devices)
        self.models = ModelCache()
        self.metronome = Metronome(self.synth, lambda: self.s.metronome)
        self.demo = DemoPlayer(self.router.put)
        self.jam = JamController(self.bg, self.models, [self.mix, self.port_sink], self.router, self.metronome,
                                 self.demo, sessions_dir, self)
        self.jam.clocks = self.devices.clocks_for  # an external clock to follow, or ports for Comper's own
        self.replayer = ReplayPlayer([self.mix, self.port_sink])
        self.keys = ComputerKeyboard(s.octave, s.velocity)

        # --- widgets -------------------------------------------------------------------------------------------
        self.transport = TransportPanel(s)
        self.banner = ChordBanner()
        self.view = WaterfallView()
        self.devices_panel = DevicesPanel(s)
        self.sessions_panel = SessionsPanel(self.bg, sessions_dir, soundfont=lambda: self.s.soundfont)
        stage = QWidget()
        stage_lay = QVBoxLayout(stage)
        stage_lay.setContentsMargins(0, 0, 0, 0)
        stage_lay.setSpacing(0)
        stage_lay.addWidget(self.banner)
        stage_lay.addWidget(self.view, 1)
        self.tabs = QTabWidget()
        self.tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabs.addTab(self.devices_panel, "Devices")
        self.tabs.addTab(self.sessions_panel, "Sessions")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(stage)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([style.WINDOW_SIZE[0] - style.SIDE_PANEL_WIDTH, style.SIDE_PANEL_WIDTH])
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.transport)
        lay.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.status_label = ElidedLabel(auto_tip=False)  # its tooltip: the full line, or the synth's reason
        self.health_label = ElidedLabel(min_chars=24)
        self.health_label.setStyleSheet(f"color: {style.TEXT_DIM};")
        bar = QStatusBar()
        bar.addWidget(self.status_label, 1)
        bar.addPermanentWidget(self.health_label)
        self.setStatusBar(bar)
        self.resize(*fit_screen(style.WINDOW_SIZE))
        if s.geometry:
            self.restoreGeometry(QByteArray.fromHex(s.geometry.encode()))
        if s.splitter:
            self.splitter.restoreState(QByteArray.fromHex(s.splitter.encode()))
        self._keys_changed()
        self._show_status()
        if self.settings_notes:
            self.say("settings: " + "; ".join(self.settings_notes), 0)
        self.transport.set_running(IDLE)

        # --- wiring ------------------------------------------------------------------------------------------
        self.transport.start_stop.connect(self.toggle_jam)
        self.transport.changed.connect(self._transport_changed)
        self.transport.model_chosen.connect(self.choose_model)
        self.jam.state_changed.connect(self._jam_state)
        self.jam.started.connect(self._jam_started)
        self.jam.stopped.connect(self._jam_stopped)
        self.jam.failed.connect(self.say)
        self.jam.model_switched.connect(self._model_switched)
        self.devices.scanned.connect(self._ports_scanned)
        self.devices.opened.connect(self._port_opened)
        dp = self.devices_panel
        dp.input_selected.connect(self._input_selected)
        dp.output_selected.connect(self._output_selected)
        dp.clock_source_selected.connect(self._clock_source_selected)
        dp.clock_out_selected.connect(self._clock_out_selected)
        dp.synth_toggled.connect(self._synth_toggled)
        dp.soundfont_chosen.connect(self._soundfont_chosen)
        dp.program_changed.connect(self._program_changed)
        dp.volume_changed.connect(self._volume_changed)
        dp.panic_pressed.connect(self.panic)
        self.sessions_panel.replay_requested.connect(self.replay)
        self.sessions_panel.replay_blind.connect(self.replay_blind)
        self.sessions_panel.stop_replay.connect(self.replayer.stop)
        self.sessions_panel.message.connect(self.say)
        self.key_filter = KeyboardFilter(self, self.keys, lambda ev: self.router.put(ev, "keys"), self.toggle_jam,
                                         self._keys_changed)
        QApplication.instance().installEventFilter(self.key_filter)

        self.frame_timer = QTimer(self)
        self.frame_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.frame_timer.timeout.connect(self._tick_view)
        self.frame_timer.start(1000 // style.IDLE_FPS)
        self.health_timer = QTimer(self)
        self.health_timer.timeout.connect(self._tick_health)
        self.health_timer.start(1000 // style.HEALTH_HZ)
        self.stall = StallMeter(self)
        self.shown = False  # the window has been painted once: the stall meter runs from then on
        self.view.on_first_paint = self._first_paint

        # --- start-up jobs, all off the GUI thread ------------------------------------------------------------
        self.bg.submit("io", self.synth.start, self._synth_started)
        self.devices.start_polling()
        if s.midi_in:
            self.devices.set_input(s.midi_in)
        if s.midi_out:
            self.devices.set_output(s.midi_out)
        if s.clock_source:
            self.devices.set_clock_source(s.clock_source)
        if s.clock_out:
            self.devices.set_clock_out(s.clock_out)
        remembered = s.model
        self.bg.submit("models", lambda: self._list_models(remembered), self._models_listed,
                       lambda e: self.say(f"no models: {e}"))
        self.bg.submit("io", self._recover_unfinished, self._recovered)

    # --- status -------------------------------------------------------------------------------------------------

    def say(self, text: str, ms: int = 8000) -> None:
        """A passing message (the device summary comes back after it)."""
        self.statusBar().showMessage(text, ms)

    def _show_status(self) -> None:
        keys = f"computer keyboard ready ({KEY_HELP})"
        text = " · ".join([self._status["midi"], self._status["synth"], keys])
        self.status_label.setText(text)
        self.status_label.setToolTip(text)

    def status_text(self) -> str:
        return self.status_label.text()

    def _synth_started(self, driver: str) -> None:
        self._startup_done("synth")
        if driver == "silent":
            self._status["synth"] = "no audio device: the built-in synth is silent"
            self.status_label.setToolTip(self.synth.synth.reason)
        else:
            self._status["synth"] = f"built-in synth on {driver}" + ("" if self.synth.enabled else " (off)")
        self.devices_panel.synth_status.setText(self.synth.status)
        self._show_status()

    def _ports_scanned(self, inputs: list[str], outputs: list[str], reason: str | None) -> None:
        self.devices_panel.set_ports(inputs, outputs, reason)
        midi = "no MIDI devices" if reason else f"MIDI: {len(inputs)} in, {len(outputs)} out"
        if midi != self._status["midi"]:
            self._status["midi"] = midi
            self._show_status()

    def _port_opened(self, direction: str, name: str, state: str) -> None:
        if name:
            self.say(f"MIDI {direction} {name}: {state}" if state in ("connected", "disconnected")
                     else f"MIDI {direction}: {state}")

    # --- models ------------------------------------------------------------------------------------------------

    @staticmethod
    def _list_models(remembered: str) -> list[ModelEntry]:
        """The shipped playable models, plus the remembered one if it was opened from a file (background)."""
        entries = list_models()
        if remembered and all(e.path != remembered for e in entries) and Path(remembered).is_file():
            extra = read_entry(remembered)
            if extra.error is None and extra.role == "online_policy":
                entries.append(extra)
        return entries

    def _models_listed(self, entries: list[ModelEntry]) -> None:
        self.entries = entries
        chosen = next((e for e in entries if e.path == self.s.model and e.error is None), None)
        chosen = chosen or default_model(entries)
        self.transport.set_models(entries, chosen.path if chosen else "")
        if chosen is None:
            self.say("no playable model found: put a bundle in the models folder or use Open file…", 0)
            if self.demo_mode:
                self.jam.failed.emit("no playable model found for the demo")
            return
        self.s.model = chosen.path
        self.bg.submit("models", lambda: self.models.policy(chosen.path), lambda _: self._startup_done("model"),
                       lambda e: self._model_refused(chosen.name, e))

    def _model_refused(self, name: str, error: BaseException) -> None:
        """The chosen model does not load (a wrong hash, NaN weights): said; the demo, which waits for it, ends
        with that line instead of never starting."""
        self.say(f"cannot load {name}: {error}", 0)
        if self.demo_mode:
            self.jam.failed.emit(f"cannot load {name}: {error}")

    def _startup_done(self, what: str) -> None:
        """Ready once the model is loaded and the synth probed: the demo starts then (not while the start-up
        jobs still compete for the CPU), and tests wait for it."""
        self._pending_startup.discard(what)
        if self._pending_startup or self.is_ready:
            return
        self.is_ready = True
        self.ready.emit()
        if self.demo_mode and self.shown:
            self.start_jam(demo=True)

    def _first_paint(self) -> None:
        """The window is on screen (its first layout and fonts done): measure stalls from now on."""
        self.shown = True
        self.stall.start()
        if self.demo_mode and self.is_ready and self.jam.state == IDLE:
            self.start_jam(demo=True)

    def choose_model(self, path: str) -> None:
        """A model from the picker or a file: it plays from the next bar (mid-jam) or the next jam. The card is
        read off the GUI thread too."""
        p = resolve_model(path) if Path(path).suffix in (".onnx", ".json") else Path(path)
        self.bg.submit("models", lambda: read_entry(p), self._model_chosen)

    def _model_chosen(self, entry: ModelEntry) -> None:
        if entry.error or entry.role != "online_policy":
            self.say(f"cannot play {Path(entry.path).name}: "
                     + (entry.error or f"an {entry.role} bundle is not a chord player"))
            self.transport.select_model(self.s.model)
            return
        self.transport.add_model(entry)
        self.s.model = entry.path
        save_settings(self.s, self.store, sync=False)
        self.jam.switch_model(entry.path)
        if self.jam.state == RUNNING:
            self.say(f"loading {entry.name}: it takes over at the next bar")

    def _model_switched(self, name: str, frame: int) -> None:
        bar = self.view_state.bar_frames if self.view_state else 16
        self.say(f"{name} takes over at bar {frame // bar + 1}")

    # --- the jam ------------------------------------------------------------------------------------------------

    def toggle_jam(self) -> None:
        if self.jam.state == IDLE:
            self.start_jam()
        elif self.jam.state == RUNNING:
            self.jam.stop()

    def jam_config(self, demo: bool = False) -> JamConfig:
        s = self.s
        plan = replace(s.jam.plan, seed=new_seed(), steer=steering.compose(s.steer_style, s.steer_rhythm, s.steer_key))
        return JamConfig(s.model, replace(s.jam, plan=plan), {p: s.program(p) for p in PARTS}, demo)

    def start_jam(self, demo: bool = False) -> bool:
        if not self.s.model:
            self.say("no model selected")
            return False
        self.replayer.stop()
        return self.jam.start(self.jam_config(demo))

    def _jam_state(self, state: str) -> None:
        if state == STARTING:
            self.stall.reset()  # the health line's figure is per jam, its start and save included
        self.transport.set_running(state)
        if state == RUNNING and self.s.clock_source in ("", LINK_CLOCK):  # Comper's own clock or a Link session's:
            # a new tempo takes over at the next beat
            for w in (self.transport.tempo, self.transport.tap):
                w.setEnabled(True)
                w.setToolTip(w.property("help") or "")
        active = state != IDLE
        self.frame_timer.setInterval(1000 // (style.JAM_FPS if active else style.IDLE_FPS))
        self.sessions_panel.play_button.setEnabled(not active)

    def _jam_started(self, info: dict) -> None:
        intro = f", intro by {info['teacher']}" if info.get("teacher") else ""
        self.transport.model_note.setText(f"playing: {info['model']}{intro}")
        note = f" ({info['note']})" if info.get("note") else ""
        self.say(f"jam started with {info['model']}{intro}; Space stops it{note}", 6000)

    def _jam_stopped(self, summary: dict, saved: Path | None) -> None:
        self.transport.model_note.setText("")
        if saved is not None:
            if not summary.get("error"):  # a fault's line (``jam.failed``, said just before) stays on screen
                self.say(f"saved {saved.name}: {summary.get('chords', 0)} chords, "
                         f"{summary.get('deadline_misses', 0)} deadline misses")
            self.sessions_panel.refresh(select=saved)

    def panic(self) -> None:
        self.key_filter.release_all()
        self.replayer.stop()
        self.jam.panic()
        self.say("panic: all notes off", 3000)

    def replay(self, info: SessionInfo) -> None:
        if self.jam.state != IDLE:
            self.say("stop the jam to replay a session")
            return
        self.bg.submit("io", lambda: load_replay(info.midi, info.model, lanes=True), self._play_replay,
                       lambda e: self.say(f"cannot replay {info.name}: {e}"))

    def replay_blind(self, midi: Path, label: str) -> None:
        """A blind A/B's version: replayed as "A" or "B", with no model name and no chord lanes."""
        if self.jam.state != IDLE:
            self.say("stop the jam to replay a session")
            return
        self.bg.submit("io", lambda: replace(load_replay(midi), name=label, model=""), self._play_replay,
                       lambda e: self.say(f"cannot replay {label}: {e}"))

    def _play_replay(self, replay) -> None:
        self.replayer.play(replay)
        self.frame_timer.setInterval(1000 // style.JAM_FPS)
        self.say(f"replaying {replay.name}", 3000)

    # --- devices -------------------------------------------------------------------------------------------------

    def _input_selected(self, name: str) -> None:
        self.s.midi_in = name
        save_settings(self.s, self.store, sync=False)
        self.devices.set_input(name)

    def _output_selected(self, name: str) -> None:
        self.s.midi_out = name
        save_settings(self.s, self.store, sync=False)
        self.devices.set_output(name)

    def _clock_source_selected(self, name: str) -> None:
        """From the next jam on (a running jam keeps the clock it started with)."""
        self.s.clock_source = name
        save_settings(self.s, self.store, sync=False)
        self.devices.set_clock_source(name)

    def _clock_out_selected(self, name: str) -> None:
        self.s.clock_out = name
        save_settings(self.s, self.store, sync=False)
        self.devices.set_clock_out(name)

    def _synth_toggled(self, on: bool) -> None:
        self.s.synth_on = on
        self.synth.set_enabled(on)
        save_settings(self.s, self.store, sync=False)
        self.devices_panel.synth_status.setText(self.synth.status)

    def _soundfont_chosen(self, path: str) -> None:
        self.s.soundfont = path
        self.devices_panel.set_soundfont(path)
        save_settings(self.s, self.store, sync=False)
        self.bg.submit("io", lambda: self.synth.start(path), self._synth_started)

    def _program_changed(self, part: str, program: int) -> None:
        setattr(self.s, f"program_{part}", program)
        save_settings(self.s, self.store, sync=False)
        self.bg.submit("io", lambda: self.synth.set_program(part, program))

    def _volume_changed(self, part: str, percent: int) -> None:
        setattr(self.s, f"volume_{part}", percent)
        self.synth.set_volume(part, percent)
        save_settings(self.s, self.store, sync=False)

    def _keys_changed(self) -> None:
        self.s.octave, self.s.velocity = self.keys.octave, self.keys.velocity
        self.devices_panel.keys_label.setText(f"computer keys: A = C{self.keys.octave}, velocity {self.keys.velocity}")

    def _transport_changed(self) -> None:
        self.transport.apply_to(self.s)
        save_settings(self.s, self.store, sync=False)
        self.jam.set_tempo(self.s.jam.bpm)  # a running jam on its own clock: from the next beat

    # --- timers ------------------------------------------------------------------------------------------------

    def _tick_view(self) -> None:
        snap = self.jam.snapshot()
        ai_bass, ai = None, ()
        if snap is not None and self.jam.session is not None:
            state = from_snapshot(snap, self.jam.session.vocab.chord_info)
            self.last_stats = snap.stats
            ai_bass, ai = self.jam.sounding()
        else:
            state = self.replayer.view_state()
            if state is None and self.jam.state == IDLE and self.frame_timer.interval() != 1000 // style.IDLE_FPS:
                self.frame_timer.setInterval(1000 // style.IDLE_FPS)
        self.view_state = state
        self.view.show_state(state, self.router.held(), ai, ai_bass)
        self.banner.show_state(state)

    def health_text(self) -> str:
        st = self.last_stats
        lat_med, lat_max = self.router.latency_ms()
        parts = []
        if st:
            parts.append(f"inference {st.get('plan_ms_median', 0):.1f}/{st.get('plan_ms_p99', 0):.1f} ms (med/p99)")
            parts.append(f"deadline misses {st.get('deadline_misses', 0)}")
            parts.append(f"chord timing p99 {st.get('onset_error_ms_p99', 0):.1f} ms")
        parts.append(f"input latency {lat_med:.1f} ms")
        parts.append(f"GUI stall max {self.stall.max_ms:.0f} ms")  # since the jam started (reset at each start)
        return " · ".join(parts)

    def _tick_health(self) -> None:
        text = self.health_text()
        if self.health_label.text() != text:
            self.health_label.setText(text)
        now = time.monotonic()
        dp, inp, out = self.devices_panel, self.devices.input, self.devices.output
        dp.input_light.set_state(light_state(inp.state if inp else None, self.router.last_activity["midi"], now))
        if out is not None and out.stats.notes_on != self._out_count:
            self._out_count, self._out_flash = out.stats.notes_on, now
        dp.output_light.set_state(light_state(out.state if out else None, self._out_flash, now))
        clock_in, clock_out = self.devices.clock_in, self.devices.clock_out
        dp.clock_light.set_state(light_state(clock_in.state if clock_in else None, 0.0, now))
        dp.clock_out_light.set_state(light_state(clock_out.state if clock_out else None, 0.0, now))
        keys = max(self.router.last_activity["keys"], self.router.last_activity["demo"])
        dp.keys_light.set_state(light_state(None, keys, now))
        self._follow_external_tempo(now)

    def _follow_external_tempo(self, now: float) -> None:
        """On a MIDI clock or in a Link session the tempo is the source's: the Tempo box shows it as it moves (a
        peer's change, a DJ's ramp), and keeps the last one for the next jam. Comper's own clock is left alone: the
        box already holds what the player chose, which the clock takes up at the next beat."""
        session = self.jam.session
        clock = session.clock if session is not None and self.jam.state == RUNNING else None
        if clock is None or not getattr(clock, "external", False):
            return
        bpm = clock.bpm_at(now)
        box = self.transport.tempo
        # a Link session's tempo is exact; a MIDI clock's is measured from jittery ticks: shown in half-bpm steps
        if not math.isfinite(bpm) or abs(bpm - box.value()) < (0.05 if hasattr(clock, "set_tempo") else 0.5):
            return
        bpm = min(max(bpm, box.minimum()), box.maximum())
        box.blockSignals(True)  # shown, not proposed back to the source
        box.setValue(bpm)
        box.blockSignals(False)
        self.s.jam = replace(self.s.jam, bpm=round(bpm, 1))
        save_settings(self.s, self.store, sync=False)

    # --- sessions ------------------------------------------------------------------------------------------------

    def _recover_unfinished(self) -> list[Recovery]:
        """Journals a crash left unfinished become saved sessions (before anything new is recorded); each on its
        own: one that cannot be saved is skipped and said, never stopping the others."""
        return recover_unfinished()

    def _recovered(self, results: list[Recovery]) -> None:
        saved = [r for r in results if r.written]
        skipped = [r for r in results if r.error]
        if saved:
            self.say(f"recovered {len(saved)} session(s) a crash left unfinished")
        if skipped:
            self.say(f"could not recover {len(skipped)} session(s): {skipped[0].error}", 0)
        self.sessions_panel.refresh()

    # --- closing ---------------------------------------------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the jam (saving it), silence everything, release the devices, keep the settings."""
        self.stall.stop()
        self.frame_timer.stop()
        self.health_timer.stop()
        deadline = time.monotonic() + timeout
        while self.jam.state != IDLE and time.monotonic() < deadline:  # a jam still starting is stopped too
            if self.jam.state == RUNNING:
                self.jam.stop()
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        self.key_filter.release_all()
        QApplication.instance().removeEventFilter(self.key_filter)
        self.replayer.stop()
        self.s.geometry = bytes(self.saveGeometry().toHex()).decode()
        self.s.splitter = bytes(self.splitter.saveState().toHex()).decode()
        self.transport.apply_to(self.s)
        save_settings(self.s, self.store)
        self.router.drain(0.5)
        self.devices.close()
        self.bg.shutdown(wait=True)
        self.router.close()
        self.synth.close()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if not getattr(self, "_shut", False):
            self._shut = True
            self.shutdown()
        super().closeEvent(event)


def fit_screen(size: tuple[int, int]) -> tuple[int, int]:
    """``size``, made no larger than the primary screen's free area (a 1280x720 laptop: the whole window shows)."""
    screen = QApplication.primaryScreen()
    if screen is None:
        return size
    free = screen.availableGeometry()
    return min(size[0], free.width()), min(size[1], free.height())
