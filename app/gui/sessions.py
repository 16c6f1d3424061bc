"""Sessions: every jam is kept (journaled while it plays, saved as MIDI + JSON when it stops). The list offers
replay (the file played through the synth with the waterfall), rename, delete, save as MIDI, render to WAV, and
export the lead sheet (MusicXML) or a chord chart (PNG/PDF) as ``comper export`` does (``app.leadsheet``), the
teacher's second opinion, "Compare with…" (the take re-jammed by another model or steering preset, as ``comper
compare`` does: ``app.compare``) and a blind A/B of two versions of a take (``ab.BlindAB``, ``app.prefs``).

A session is ``<name>.mid`` + ``<name>.mid.session.json`` (the sidecar; ``<name>.json`` from older versions is
still read) + ``<name>.journal.jsonl`` in the sessions folder (``$COMPER_SESSIONS`` or ``~/Comper/sessions``);
renaming renames all three and keeps the sidecar's pointers true. Every file is written through the one output
writer (``app.recording.output``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..recording.journal import SUFFIX
from ..recording.output import (
    MIDI,
    OutputError,
    existing_sidecar,
    read_sidecar,
    sidecar_path,
    write_file,
    write_together,
)
from .ab import BlindAB
from .background import Background

_NAME_OK = re.compile(r"^[^/\\:*?\"<>|\x00]+$")


@dataclass(frozen=True)
class SessionInfo:
    midi: Path
    name: str
    started: str
    seconds: float
    model: str
    chords: int
    notes: int
    recovered: bool

    @property
    def sidecar(self) -> Path | None:
        return existing_sidecar(self.midi)

    @property
    def journal(self) -> Path:
        return self.midi.with_name(self.name + SUFFIX)

    def label(self) -> str:
        m, s = divmod(int(round(self.seconds)), 60)
        when = self.started[:16].replace("T", " ") if self.started else "?"
        extra = " · recovered" if self.recovered else ""
        return f"{self.name}\n   {when} · {m}:{s:02d} · {self.chords} chords{extra}"

    def tooltip(self) -> str:
        return f"{self.midi}\nmodel {self.model or '?'}, {self.notes} melody notes, {self.chords} chord onsets"


def read_session(midi: Path) -> SessionInfo:
    side = read_sidecar(midi)
    model = side.get("model") or {}
    return SessionInfo(midi, midi.stem, side.get("started") or "", float(side.get("duration_seconds") or 0.0),
                       model.get("name", "") if isinstance(model, dict) else str(model),
                       int(side.get("chord_onsets") or 0), int(side.get("melody_notes") or 0),
                       bool(side.get("recovered")))


def list_sessions(directory: Path) -> list[SessionInfo]:
    """Saved sessions, newest first."""
    if not directory.is_dir():
        return []
    mids = sorted(directory.glob("*.mid"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return [read_session(p) for p in mids]


def rename_session(info: SessionInfo, new_name: str) -> SessionInfo:
    """Rename the MIDI file, sidecar and journal together; refuses a name that is taken or not a file name."""
    new_name = new_name.strip()
    if not new_name or not _NAME_OK.match(new_name) or new_name.startswith("."):
        raise ValueError(f"not a usable name: {new_name!r}")
    new_midi = info.midi.with_name(new_name + ".mid")
    if new_midi.exists() or existing_sidecar(new_midi):
        raise ValueError(f"a session called {new_name!r} already exists")
    new_journal = info.midi.with_name(new_name + SUFFIX)
    if info.journal.exists():
        info.journal.rename(new_journal)
    old_sidecar = info.sidecar
    if old_sidecar:
        side = json.loads(old_sidecar.read_text(encoding="utf-8"))
        side["midi"] = new_midi.name
        if new_journal.exists():
            side["journal"] = str(new_journal.resolve())
        text = json.dumps(side, indent=1, ensure_ascii=False) + "\n"
        write_together([(sidecar_path(new_midi), lambda f: f.write(text.encode()))])
        old_sidecar.unlink()
    info.midi.rename(new_midi)
    return read_session(new_midi)


def delete_session(info: SessionInfo) -> None:
    for p in (info.midi, info.sidecar, info.journal):
        if p:
            p.unlink(missing_ok=True)


def export_midi(info: SessionInfo, dest: str | Path) -> Path:
    dest = Path(dest)
    if dest.suffix.lower() not in MIDI:
        dest = dest.with_suffix(".mid")
    with open(info.midi, "rb") as src:
        write_file(dest, lambda f: shutil.copyfileobj(src, f), MIDI)
    return dest


def render_wav(info: SessionInfo, dest: str | Path, soundfont: str | None = None) -> Path:
    from ..synth import render_midi_to_wav

    dest = Path(dest)
    if dest.suffix.lower() != ".wav":
        dest = dest.with_suffix(".wav")
    return render_midi_to_wav(info.midi, dest, soundfont=soundfont or None).wav_path


class SessionsPanel(QWidget):
    replay_requested = Signal(object)  # SessionInfo
    replay_blind = Signal(object, str)  # a version's MIDI path, "A" or "B": replayed with no name and no lanes
    stop_replay = Signal()
    message = Signal(str)  # for the status bar

    def __init__(self, background: Background, directory, soundfont=lambda: "", parent: QWidget | None = None) -> None:
        """``directory``: a callable giving the sessions folder (read at each refresh: tests move it)."""
        super().__init__(parent)
        self.bg, self.directory, self.soundfont = background, directory, soundfont
        self.sessions: list[SessionInfo] = []
        self.list = QListWidget()
        self.list.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.play_button = QPushButton("Replay")
        self.stop_button = QPushButton("Stop")
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Delete")
        self.midi_button = QPushButton("Save as MIDI…")
        self.wav_button = QPushButton("Render WAV…")
        self.sheet_button = QPushButton("Export lead sheet…")
        self.chart_button = QPushButton("Chord chart…")
        self.second_button = QPushButton("Teacher's second opinion")
        self.second_button.setToolTip("The offline teacher, which hears the whole melody, comps this take again; "
                                      "saved beside it as NAME.teacher, with both harmonies")
        self.compare_button = QPushButton("Compare with…")
        self.compare_button.setToolTip("Another model (or steering) comps this take's melody as played; saved "
                                       "beside it as NAME.vs-MODEL; Replay shows both chord lanes")
        self.ab_button = QPushButton("Blind A/B…")
        self.ab_button.setToolTip("Play this and another version of the take as A and B in random order, pick the "
                                  "better one; the choice goes to preferences.jsonl")
        self.ab: BlindAB | None = None
        lay = QVBoxLayout(self)
        lay.addWidget(self.list, 1)
        for pair in ((self.play_button, self.stop_button), (self.rename_button, self.delete_button),
                     (self.midi_button, self.wav_button), (self.sheet_button, self.chart_button),
                     (self.second_button,), (self.compare_button, self.ab_button)):
            row = QHBoxLayout()
            for b in pair:
                b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                row.addWidget(b)
            lay.addLayout(row)
        self.play_button.clicked.connect(lambda: self._with_selected(self.replay_requested.emit))
        self.stop_button.clicked.connect(self.stop_replay)
        self.rename_button.clicked.connect(lambda: self._with_selected(self._ask_rename))
        self.delete_button.clicked.connect(lambda: self._with_selected(self._ask_delete))
        self.midi_button.clicked.connect(lambda: self._with_selected(self._ask_export))
        self.wav_button.clicked.connect(lambda: self._with_selected(self._ask_render))
        self.sheet_button.clicked.connect(lambda: self._with_selected(lambda i: self._ask_sheet(i, "musicxml")))
        self.chart_button.clicked.connect(lambda: self._with_selected(lambda i: self._ask_sheet(i, "chart")))
        self.second_button.clicked.connect(lambda: self._with_selected(self.second_opinion))
        self.compare_button.clicked.connect(lambda: self._with_selected(self._ask_compare))
        self.ab_button.clicked.connect(lambda: self._with_selected(self._ask_ab))
        self.list.itemDoubleClicked.connect(
            lambda item: self.replay_requested.emit(item.data(Qt.ItemDataRole.UserRole)))

    # --- the list ------------------------------------------------------------------------------------------

    def refresh(self, select: Path | None = None) -> None:
        self.bg.submit("io", lambda: list_sessions(Path(self.directory())), lambda s: self._show(s, select))

    def _show(self, sessions: list[SessionInfo], select: Path | None) -> None:
        keep = select or (self.selected().midi if self.selected() else None)
        self.sessions = sessions
        self.list.clear()
        for info in sessions:
            item = QListWidgetItem(info.label())
            item.setToolTip(info.tooltip())
            item.setData(Qt.ItemDataRole.UserRole, info)
            self.list.addItem(item)
            if keep is not None and info.midi == keep:
                self.list.setCurrentItem(item)

    def selected(self) -> SessionInfo | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def names(self) -> list[str]:
        return [s.name for s in self.sessions]

    def _with_selected(self, action) -> None:
        info = self.selected()
        if info is None:
            self.message.emit("select a session first")
        else:
            action(info)

    # --- actions (the dialogs ask, these do; tests call these) -------------------------------------------

    def rename(self, info: SessionInfo, name: str) -> None:
        try:
            new = rename_session(info, name)
        except (ValueError, OSError, OutputError) as e:
            self.message.emit(f"not renamed: {e}")
            return
        self.message.emit(f"renamed to {new.name}")
        self.refresh(select=new.midi)

    def delete(self, info: SessionInfo) -> None:
        delete_session(info)
        self.message.emit(f"deleted {info.name}")
        self.refresh()

    def export_midi(self, info: SessionInfo, dest: str | Path) -> None:
        self.bg.submit("io", lambda: export_midi(info, dest), lambda p: self.message.emit(f"saved {p}"),
                       lambda e: self.message.emit(f"not saved: {e}"))

    def render_wav(self, info: SessionInfo, dest: str | Path) -> None:
        self.message.emit(f"rendering {info.name}…")
        self.bg.submit("io", lambda: render_wav(info, dest, self.soundfont()),
                       lambda p: self.message.emit(f"rendered {p}"), lambda e: self.message.emit(f"not rendered: {e}"))

    def export_sheet(self, info: SessionInfo, musicxml: str | Path | None = None,
                     chart: str | Path | None = None) -> None:
        """The lead sheet as MusicXML and/or the chord chart, as ``comper export`` writes them."""
        from ..leadsheet import export

        self.bg.submit("io", lambda: export(info.midi, musicxml, chart),
                       lambda done: self.message.emit("saved " + ", ".join(map(str, done.written))),
                       lambda e: self.message.emit(f"not exported: {e}"))

    def second_opinion(self, info: SessionInfo, seed: int = 0) -> None:
        """The teacher's version of the take, as ``comper reharmonize`` writes it; selected in the list when done,
        so Replay plays it (the take itself stays as it was)."""
        from ..engine.bundle import shipped_teacher
        from ..engine.teacher import OnnxTeacher
        from ..leadsheet.reharmonize import second_opinion

        def run():
            bundle = shipped_teacher()
            if bundle is None:
                raise ValueError("no offline-teacher bundle in the models folder")
            return second_opinion(info.midi, OnnxTeacher(bundle), seed=seed)

        def done(result) -> None:
            self.message.emit(f"saved {result.out.name}: the teacher's chords {result.teacher.describe()}; "
                              f"the take's {result.live.describe()}")
            self.refresh(select=result.out)

        self.message.emit(f"the teacher is comping {info.name}…")
        self.bg.submit("io", run, done, lambda e: self.message.emit(f"no second opinion: {e}"))

    def compare(self, info: SessionInfo, model: str | None, steer: str | None = None, seed: int | None = None) -> None:
        """The take re-jammed by ``model`` (``steer``: a preset, None: the take's steering), as ``comper compare``
        writes it; selected when done, so Replay plays it with both chord lanes."""
        from ..compare import compare

        def done(result) -> None:
            self.message.emit(f"saved {result.out.name}: {result.model} {result.other_lane.describe()}; "
                              f"the take {result.take_lane.describe()}")
            self.refresh(select=result.out)

        self.message.emit(f"{model or 'the default model'} is comping {info.name}…")
        self.bg.submit("io", lambda: compare(info.midi, model, steer, seed=seed), done,
                       lambda e: self.message.emit(f"no comparison: {e}"))

    def blind_ab(self, first: SessionInfo, second: SessionInfo, seed: int | None = None) -> BlindAB:
        """Open the blind A/B of two versions (not modal); its choice goes to the sessions folder's
        preferences.jsonl."""
        from ..prefs import prefs_path

        if self.ab is not None:
            self.ab.close()
        self.ab = BlindAB(first.midi, second.midi, prefs_path(self.directory()), self.bg, seed, self)
        self.ab.play.connect(self.replay_blind)
        self.ab.stop.connect(self.stop_replay)
        self.ab.message.connect(self.message)
        self.ab.show()
        return self.ab

    def related(self, info: SessionInfo) -> list[SessionInfo]:
        """The other sessions, the versions of the same take first (comparisons, second opinions, the take)."""
        from ..compare import source_of

        take = source_of(info.midi) or info.midi
        same = [s for s in self.sessions if s.midi != info.midi and take in (s.midi, source_of(s.midi))]
        return same + [s for s in self.sessions if s.midi != info.midi and s not in same]

    def _ask_compare(self, info: SessionInfo) -> None:
        from ..engine import steering
        from .models import list_models

        dialog = QDialog(self)
        dialog.setWindowTitle(f"Compare {info.name} with…")
        models, steer = QComboBox(), QComboBox()
        for e in list_models():
            if e.error is None:
                models.addItem(e.name, e.path)
        steer.addItem("as the take", None)
        for name in steering.PRESETS:
            steer.addItem(name, name)
        form = QFormLayout(dialog)
        form.addRow("Model", models)
        form.addRow("Steering", steer)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)
        if dialog.exec() == QDialog.DialogCode.Accepted and models.count():
            self.compare(info, models.currentData(), steer.currentData())

    def _ask_ab(self, info: SessionInfo) -> None:
        others = self.related(info)
        if not others:
            self.message.emit("a blind A/B needs a second version: use Compare with… first")
            return
        name, ok = QInputDialog.getItem(self, "Blind A/B", f"Play {info.name} against:", [s.name for s in others],
                                        0, False)
        if ok and name:
            self.blind_ab(info, next(s for s in others if s.name == name))

    def _ask_sheet(self, info: SessionInfo, what: str) -> None:
        title, name, kinds = (("Export lead sheet", f"{info.name}.musicxml", "MusicXML (*.musicxml *.xml)")
                              if what == "musicxml" else
                              ("Chord chart", f"{info.name}.pdf", "PDF (*.pdf);;PNG image (*.png)"))
        path, kind = QFileDialog.getSaveFileName(self, title, str(Path.home() / name), kinds)
        if path and not Path(path).suffix:  # the suffix says which file: the chosen type's when none is typed
            path += ".png" if "png" in kind else Path(name).suffix
        if path:
            self.export_sheet(info, **{what: path})

    def _ask_rename(self, info: SessionInfo) -> None:
        name, ok = QInputDialog.getText(self, "Rename session", "Name:", text=info.name)
        if ok and name and name != info.name:
            self.rename(info, name)

    def _ask_delete(self, info: SessionInfo) -> None:
        answer = QMessageBox.question(self, "Delete session", f"Delete {info.name} (MIDI, sidecar and journal)?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(info)

    def _ask_export(self, info: SessionInfo) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save as MIDI", str(Path.home() / f"{info.name}.mid"),
                                              "MIDI files (*.mid)")
        if path:
            self.export_midi(info, path)

    def _ask_render(self, info: SessionInfo) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Render to WAV", str(Path.home() / f"{info.name}.wav"),
                                              "WAV audio (*.wav)")
        if path:
            self.render_wav(info, path)
