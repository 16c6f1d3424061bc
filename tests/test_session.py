"""The jam service (app/session.py), which `comper jam`, the desktop app, `comper rejam` and the benchmarks open
their jams with: the header the journal and the sidecar have always had, the recorder given to the session when
it is made, a start that fails leaving no unfinished journal, and no import cycle in `app/`."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest

from app.engine.bundle import load_bundle
from app.engine.live import JamSession
from app.engine.options import JamSettings
from app.engine.planner import PlanSettings
from app.engine.policy import OnnxPolicy
from app.engine.voicing import VoicingSettings
from app.recording import find_unfinished, read_journal
from app.session import JamRequest, SessionHeader, open_jam

APP = Path(__file__).resolve().parents[1] / "app"
KEYS = ["bpm", "meter", "t0", "model_name", "model_sha256", "seed", "plan", "voicing", "teacher", "mode"]


class Sink:
    thru = False

    def __init__(self) -> None:
        self.sounding: dict = {}
        self.lock = threading.Lock()

    def note_on(self, part, pitch, velocity):
        with self.lock:
            self.sounding[(part, pitch)] = self.sounding.get((part, pitch), 0) + 1

    def note_off(self, part, pitch):
        with self.lock:
            self.sounding[(part, pitch)] = self.sounding.get((part, pitch), 0) - 1

    def all_off(self):
        pass


@pytest.fixture(scope="module")
def policy(tiny_bundle):
    return OnnxPolicy(load_bundle(tiny_bundle))


FAST = JamSettings(bpm=240, count_in_bars=0, plan=PlanSettings(lookahead_beats=1, commit_beats=1, listen_beats=0,
                                                                seed=2, temperature=1.5))


def test_the_header_has_the_keys_the_journals_and_sidecars_always_had():
    h = SessionHeader(bpm=120.0, meter=(3, 4), t0=None, model_name="m", model_sha256=None, seed=3,
                      plan=PlanSettings(), voicing=VoicingSettings(), teacher=None, mode="jam")
    assert list(h.as_dict()) == KEYS and h.as_dict()["meter"] == [3, 4]  # t0, sha and teacher even when None
    desktop = SessionHeader(**(vars(h) | {"programs": {"chords": 4}, "input": "demo", "app": "desktop"}))
    assert list(desktop.as_dict()) == KEYS + ["programs", "input", "app"]
    assert list(SessionHeader(**(vars(h) | {"source": "x.mid", "mode": "rejam"})).as_dict()) == KEYS + ["source"]


def test_open_jam_plays_into_the_recorder_it_was_made_with_and_finish_saves_the_take(policy, tmp_path):
    sink = Sink()
    jam = open_jam(JamRequest(policy, FAST, tmp_path, [sink], header={"input": "live"}))
    assert jam.session.recorder is jam.recorder and jam.performer.recorder is jam.recorder
    assert jam.session.clock is jam.clock and jam.session.planner is jam.planner
    deadline = time.monotonic() + 20
    while len(jam.session.played) < 16 and time.monotonic() < deadline:
        time.sleep(0.01)
    summary, saved = jam.finish()
    assert saved == jam.recorder.path.parent / saved.name and saved.exists() and summary["frames"] >= 8
    assert find_unfinished(tmp_path) == [], "the journal is closed once the take is saved"
    header = read_journal(jam.recorder.path).header
    assert list(header["settings"]) == KEYS + ["input", "band"] and header["t0"] == jam.clock.start
    assert header["settings"]["band"] == {"style": "pad", "bass": "root", "drums": "off", "dynamics": [30, 115]}
    assert header["settings"]["model_sha256"] == policy.bundle.card.onnx.sha256 == header["model"]["sha256"]
    assert header["settings"]["plan"]["commit_beats"] == 1 and header["bpm"] == 240.0
    assert all(n == 0 for n in sink.sounding.values()), "every note struck was released"
    assert jam.stop() is summary, "stopping again changes nothing"


def test_a_start_that_fails_leaves_no_unfinished_journal(policy, tmp_path, monkeypatch):
    def broken(self, clock=None):
        raise RuntimeError("no threads today")

    monkeypatch.setattr(JamSession, "start", broken)
    with pytest.raises(RuntimeError, match="no threads today"):
        open_jam(JamRequest(policy, FAST, tmp_path, [Sink()]))
    assert len(list(tmp_path.glob("*.journal.jsonl"))) == 1 and find_unfinished(tmp_path) == []


def test_a_simulated_jam_has_no_session_and_its_clock_starts_at_zero(policy, tmp_path):
    jam = open_jam(JamRequest(policy, FAST, tmp_path, mode="rejam", header={"source": "x.mid"}, simulated=True))
    assert jam.session is None and jam.clock.start == 0.0 and jam.performer.recorder is jam.recorder
    for f in range(8):
        jam.performer.play(f, jam.clock.time_of(f), jam.planner.chord_for(f))
        jam.planner.advance(60, f == 0)
    summary, saved = jam.finish(tmp_path / "take.mid", frames=8)
    assert summary == {"frames": 8} and saved.exists()
    assert read_journal(jam.recorder.path).header["settings"]["source"] == "x.mid"


def imports(path: Path, package: str) -> set[str]:
    """The app modules ``path`` imports, anywhere in it (a lazy import inside a function counts)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + [node.module or ""]) if node.level else node.module
            out |= {f"{base.rstrip('.')}.{a.name}" for a in node.names}  # a module, or a name in one
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("app.")}


def test_no_import_cycle_in_app():
    """``gui/main_window.py`` imported ``sessions_dir`` from ``cli.py``, which imports the GUI: a cycle."""
    modules = {}
    for p in APP.rglob("*.py"):
        name = ".".join(("app",) + p.relative_to(APP).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = p
    graph = {}
    for name, p in modules.items():
        package = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for target in imports(p, package):  # a module, or a package (its __init__)
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
        graph[name] = found

    def cycle_from(start: str, path: list[str], seen: set[str]) -> list[str] | None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                if (c := cycle_from(start, path + [nxt], seen)) is not None:
                    return c
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m, [m], {m})) is not None]
    assert not cycles, " -> ".join(cycles[0])
