"""Blind A/B: the flow through the desktop app, offscreen (two versions of a take played as "A" and "B" in the
order a seed draws, no names shown, the pick saved as one line of preferences.jsonl), and `comper prefs --summary`
(win rates per pair, a corrupt line skipped and named). Uses the shipped models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import QSettings, Qt  # noqa: E402
from test_rejam import melody_midi  # noqa: E402

from app.cli import main  # noqa: E402
from app.compare import sha256_of  # noqa: E402
from app.prefs import FILE, summary  # noqa: E402
from app.recording.output import sidecar_path  # noqa: E402

TUNE = [(k * 48, k * 48 + 40, [60, 62, 64, 65, 67, 65, 64, 62][k % 8], 80) for k in range(32)]  # 16 beats of 8ths


@pytest.fixture(scope="module")
def made_take(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("made")
    tune = melody_midi(folder / "tune.mid", TUNE)
    take = folder / "ode.mid"
    assert main(["rejam", str(tune), "-o", str(take), "--model", "gapt", "--listen", "2", "--seed", "2"]) == 0
    return take


@pytest.fixture
def window(qtbot, made_take, tmp_path, monkeypatch):
    """The app on the shipped models, with the take in its sessions folder."""
    from app.gui.main_window import MainWindow

    folder = tmp_path / "sessions"
    folder.mkdir()
    shutil.copy(made_take, folder / made_take.name)
    shutil.copy(sidecar_path(made_take), sidecar_path(folder / made_take.name))
    monkeypatch.delenv("COMPER_MODELS", raising=False)
    monkeypatch.setenv("COMPER_SESSIONS", str(folder))
    monkeypatch.setenv("COMPER_SETTINGS", str(tmp_path / "never-used.ini"))
    w = MainWindow(store=QSettings(str(tmp_path / "comper.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.is_ready, timeout=30000)
    return w


def test_compare_then_a_blind_ab_through_the_app_writes_one_preference_line(qtbot, window, tmp_path, capsys):
    from app.gui.ab import draw_order

    w, panel = window, window.sessions_panel
    folder = tmp_path / "sessions"
    qtbot.waitUntil(lambda: panel.names() == ["ode"], timeout=5000)
    take = panel.sessions[0]
    # "Compare with…": realchords, safe steering; saved beside the take and selected
    with qtbot.waitSignal(panel.message, timeout=60000, check_params_cb=lambda m: m.startswith("saved")) as said:
        panel.compare(take, "realchords", "safe")
    assert "ode.vs-realchords-safe.mid" in said.args[0] and "harmony" in said.args[0]
    qtbot.waitUntil(lambda: sorted(panel.names()) == ["ode", "ode.vs-realchords-safe"], timeout=5000)
    other = panel.selected()
    assert other.midi == folder / "ode.vs-realchords-safe.mid"
    assert [s.name for s in panel.related(take)] == ["ode.vs-realchords-safe"]
    # Replay of the comparison: both chord lanes, named and measured
    panel.play_button.click()
    qtbot.waitUntil(lambda: w.view_state is not None and len(w.view_state.lanes) == 2, timeout=10000)
    assert [lane.title for lane in w.view_state.lanes] == ["take: gapt (balanced)", "realchords (safe)"]
    panel.stop_button.click()
    qtbot.waitUntil(lambda: not w.replayer.active, timeout=5000)

    # the blind A/B: the order drawn from the seed, nothing named while listening
    seed = next(s for s in range(100) if draw_order(take.midi, other.midi, s)[0] == other.midi)  # A: the comparison
    ab = panel.blind_ab(take, other, seed=seed)
    assert (ab.a, ab.b) == (other.midi, take.midi)
    assert not ab.pick_a.isEnabled() and not ab.pick_b.isEnabled()  # listen to both first
    qtbot.mouseClick(ab.play_a, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.view_state is not None and w.view_state.title == "replay: A", timeout=10000)
    assert w.view_state.lanes == () and w.view_state.model == "" and "realchords" not in w.banner.model.text()
    assert not ab.pick_b.isEnabled()
    qtbot.mouseClick(ab.play_b, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.view_state is not None and w.view_state.title == "replay: B", timeout=10000)
    assert ab.pick_b.isEnabled() and "gapt" not in ab.info.text()
    with qtbot.waitSignal(ab.chosen, timeout=10000):
        qtbot.mouseClick(ab.pick_b, Qt.MouseButton.LeftButton)  # B: the take
    qtbot.waitUntil(lambda: not w.replayer.active, timeout=5000)
    assert "A was realchords (safe)" in ab.info.text() and "You picked B" in ab.info.text()
    assert not ab.pick_a.isEnabled() and not ab.pick_b.isEnabled()  # one choice per round

    lines = (folder / FILE).read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["picked"] == "b" and line["seed"] == seed and line["time"].endswith("Z")
    assert line["take"] == {"file": "ode.mid", "sha256": sha256_of(folder / "ode.mid")}
    assert (line["a"]["file"], line["a"]["model"], line["a"]["steering"]) == ("ode.vs-realchords-safe.mid",
                                                                            "realchords", "safe")
    assert (line["b"]["file"], line["b"]["model"], line["b"]["steering"]) == ("ode.mid", "gapt", "balanced")
    assert line["a"]["role"] == "comparison" and line["b"]["role"] == "take" and line["b"]["seed"] == 2
    ab.close()

    capsys.readouterr()
    assert main(["prefs", "--summary", "--dir", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == ("gapt (balanced) vs realchords (safe): 1 choice; gapt (balanced) 1 "
                                               "(100%), realchords (safe) 0 (0%)")


def choice_line(a: str, b: str, picked: str) -> str:
    model = lambda label: {"model": label.split()[0], "steering": label.split()[1].strip("()")}  # noqa: E731
    return json.dumps({"take": {"file": "t.mid"}, "seed": 1, "a": model(a), "b": model(b), "picked": picked})


def test_prefs_summary_counts_wins_per_pair_and_names_a_corrupt_line(tmp_path, capsys):
    lines = [choice_line("gapt (balanced)", "realchords (safe)", "a"),
             choice_line("realchords (safe)", "gapt (balanced)", "a"),  # the same pair, the other order
             choice_line("realchords (safe)", "gapt (balanced)", "b"),
             '{"a": {"model": "gapt"}, "b": {"model": "x"}, "pi',  # cut short
             choice_line("gapt (balanced)", "online-mle (off)", "b"),
             "",
             '["not", "a", "choice"]']
    path = tmp_path / FILE
    path.write_text("\n".join(lines) + "\n")
    tallies, errors = summary(lines)
    assert [(t.pair, t.wins) for t in tallies] == [
        (("gapt (balanced)", "realchords (safe)"), {"gapt (balanced)": 2, "realchords (safe)": 1}),
        (("gapt (balanced)", "online-mle (off)"), {"online-mle (off)": 1})]
    assert errors == [f"{FILE} line 4: not JSON; skipped", f"{FILE} line 7: not a JSON object; skipped"]
    assert main(["prefs", "--summary", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "gapt (balanced) vs realchords (safe): 3 choices; gapt (balanced) 2 (67%), realchords (safe) 1 (33%)",
        "gapt (balanced) vs online-mle (off): 1 choice; gapt (balanced) 0 (0%), online-mle (off) 1 (100%)"]
    assert err.splitlines() == [f"comper: error: {path} line 4: not JSON; skipped",
                                f"comper: error: {path} line 7: not a JSON object; skipped"]
    assert main(["prefs", "--dir", str(tmp_path / "nowhere")]) == 0
    assert "no blind A/B choices yet" in capsys.readouterr().out
