"""Replay a saved session: its MIDI file played through the built-in synth (and MIDI out) in real time, with the
waterfall showing it as it was jammed.

Why play the file rather than re-jam: a replay should sound like what happened; the sidecar keeps the seed and
settings for anyone who wants to re-jam it with ``comper rejam``.

A comparison (``comper compare``, "Compare with…") or a second opinion is replayed with both versions' chord lanes
side by side, each with its figures (``app.compare.replay_lanes``); a blind A/B replay shows neither lanes nor
names, only "A" or "B".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido

from ..engine.live import wait_until
from .loop_thread import LoopThread
from .view_model import COMMITTED, PLAYED, ChordBlock, NoteBlock, ViewState

CHANNEL_PART = {0: "melody", 1: "chords", 2: "bass", 9: "drums"}
CONTROL_TYPES = ("control_change", "pitchwheel", "aftertouch", "polytouch")  # replayed as played (the sustain pedal)
TAIL_S = 1.0  # let the last chord ring before the replay ends


@dataclass(frozen=True)
class TempoMap:
    """The file's tempo changes as segments (start tick, its time in seconds, microseconds per beat): a take whose
    tempo changed mid-jam, or that followed an external clock, replays at its own speed, and the waterfall stays
    on its bars."""

    segments: tuple[tuple[int, float, int], ...]
    ticks_per_beat: int

    @classmethod
    def from_changes(cls, changes: list[tuple[int, int]], ticks_per_beat: int) -> TempoMap:
        """``changes``: (tick, tempo) of every set_tempo, any order; before the first, 120 bpm (MIDI's default)."""
        segments, last_tick, last_tempo, t = [], 0, 500000, 0.0
        for tick, tempo in sorted(changes):
            t += mido.tick2second(tick - last_tick, ticks_per_beat, last_tempo)
            if segments and segments[-1][0] == tick:
                segments.pop()
            segments.append((tick, t, tempo))
            last_tick, last_tempo = tick, tempo
        if not segments or segments[0][0] > 0:
            segments.insert(0, (0, 0.0, 500000))
        return cls(tuple(segments), ticks_per_beat)

    def seconds(self, tick: float) -> float:
        start, t, tempo = next(s for s in reversed(self.segments) if s[0] <= tick) if tick >= 0 else self.segments[0]
        return t + mido.tick2second(tick - start, self.ticks_per_beat, tempo)

    def frame_at(self, seconds: float) -> float:
        """The fractional frame (16th) sounding ``seconds`` into the replay."""
        start, t, tempo = next((s for s in reversed(self.segments) if s[1] <= seconds), self.segments[0])
        ticks = start + mido.second2tick(seconds - t, self.ticks_per_beat, tempo) if tempo else start
        return ticks * 4 / self.ticks_per_beat


@dataclass
class Replay:
    name: str
    bpm: float
    meter: tuple[int, int]
    chords: list[ChordBlock]
    notes: list[NoteBlock]
    events: list[tuple]  # (seconds, "on"/"off", part, pitch, velocity) or (seconds, "control", part, status, data)
    seconds: float
    model: str = ""
    lanes: list = field(default_factory=list)  # ``app.compare.LaneView``s: the take's and this version's chords
    tempo: TempoMap | None = None  # None: one tempo, ``bpm``


def load_replay(midi_path: str | Path, model: str = "", lanes: bool = False) -> Replay:
    """Read a saved session (the layout ``recording/save.py`` writes) onto the frame grid; ``lanes``: with the
    chord lanes of the take and this version when it is a comparison (an extra: none when they cannot be read)."""
    path = Path(midi_path)
    mid = mido.MidiFile(str(path))
    tpb = mid.ticks_per_beat
    tempos, meter, markers = [], (4, 4), {}
    notes: dict[str, list[tuple[int, int, int, int]]] = {"melody": [], "chords": [], "bass": [], "drums": []}
    controls: list[tuple[int, str, int, tuple[int, ...]]] = []  # the player's pedals and bends: (tick, part, ...)
    for track in mid.tracks:
        tick, open_notes = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
            elif msg.type == "time_signature":
                meter = (msg.numerator, msg.denominator)
            elif msg.type == "marker":
                markers[tick] = msg.text
            elif msg.type in CONTROL_TYPES and msg.channel in CHANNEL_PART:
                raw = msg.bytes()
                controls.append((tick, CHANNEL_PART[msg.channel], raw[0] & 0xF0, tuple(raw[1:])))
            elif msg.type in ("note_on", "note_off") and msg.channel in CHANNEL_PART:
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity > 0:
                    open_notes[key] = (tick, msg.velocity)
                elif key in open_notes:
                    on, vel = open_notes.pop(key)
                    notes[CHANNEL_PART[msg.channel]].append((on, tick, msg.note, vel))
    tempo_map = TempoMap.from_changes(tempos, tpb)
    bpm = mido.tempo2bpm(tempo_map.segments[0][2] if tempos else 500000)  # the starting tempo
    frame = lambda tick: tick * 4 / tpb  # noqa: E731
    onsets: dict[int, list[tuple[int, int, int, str]]] = {}
    for part in ("bass", "chords"):
        for on, off, pitch, _ in notes[part]:
            onsets.setdefault(on, []).append((on, off, pitch, part))
    blocks = _marked_blocks(markers, notes, frame) if markers else []  # a style's notes: a block per chord
    for on in sorted(onsets) if not markers else ():
        group = onsets[on]
        bass = next((p for _, _, p, part in group if part == "bass"), None)
        upper = tuple(sorted(p for _, _, p, part in group if part == "chords"))
        end = max(off for _, off, _, _ in group)
        blocks.append(ChordBlock(round(frame(on)), max(round(frame(end)), round(frame(on)) + 1), -1,
                                 markers.get(on, ""), bass, upper, COMMITTED, True))
    melody = [NoteBlock(p, round(frame(on)), max(round(frame(off)), round(frame(on)) + 1))
              for on, off, p, _ in sorted(notes["melody"])]
    sec = tempo_map.seconds
    events = sorted([(sec(on), "on", part, p, v) for part, ns in notes.items() for on, _, p, v in ns]
                    + [(sec(off), "off", part, p, 0) for part, ns in notes.items() for _, off, p, _ in ns]
                    + [(sec(tick), "control", part, status, data) for tick, part, status, data in controls],
                    key=lambda e: (e[0], e[1] == "on"))
    return Replay(path.stem, bpm, meter, blocks, melody, events, events[-1][0] if events else 0.0, model,
                  _lanes(path) if lanes else [], tempo_map)


def _lanes(path: Path) -> list:
    from ..compare import replay_lanes

    return replay_lanes(path)


def _marked_blocks(markers: dict[int, str], notes: dict[str, list[tuple[int, int, int, int]]], frame) -> list:
    """One block per chord marker (a chord as the waterfall shows chords): the pitches the chords and bass struck
    from it to the next marker. A comping style (an arpeggio, a walking bass) strikes many notes per chord; grouped
    by onset they would draw as a shower of single notes."""
    ticks = sorted(markers)
    blocks = []
    for i, start in enumerate(ticks):
        stop = ticks[i + 1] if i + 1 < len(ticks) else None
        inside = {part: [n for n in notes[part] if n[0] >= start and (stop is None or n[0] < stop)]
                  for part in ("chords", "bass")}
        if not inside["chords"] and not inside["bass"]:
            continue
        end = max(off for part in inside.values() for _, off, _, _ in part)
        bass = min(inside["bass"])[2] if inside["bass"] else None
        upper = tuple(sorted({p for _, _, p, _ in inside["chords"]}))
        blocks.append(ChordBlock(round(frame(start)), max(round(frame(end)), round(frame(start)) + 1), -1,
                                 markers[start], bass, upper, COMMITTED, True))
    return blocks


class ReplayPlayer(LoopThread):
    """Plays one Replay at a time on its own thread; ``view_state()`` is what the waterfall shows meanwhile."""

    def __init__(self, sinks: list) -> None:
        super().__init__()
        self.sinks = sinks
        self.replay: Replay | None = None
        self._start = 0.0

    @property
    def active(self) -> bool:
        return self.running

    def play(self, replay: Replay) -> None:
        self.replay, self._start = replay, time.monotonic() + 0.2
        self.launch("comper-replay", self._run, replay, self._start)

    def _run(self, replay: Replay, start: float, stop: threading.Event) -> None:
        try:
            for t, kind, part, pitch, vel in replay.events:
                if not wait_until(start + t, stop):
                    break
                for sink in self.sinks:
                    if kind == "on":
                        sink.note_on(part, pitch, vel)
                    elif kind == "off":
                        sink.note_off(part, pitch)
                    elif hasattr(sink, "control"):  # the pedal as it was played: pitch = status, vel = data
                        sink.control(part, pitch, vel)
            else:
                stop.wait(TAIL_S)
        finally:
            for sink in self.sinks:
                sink.all_off()

    def view_state(self) -> ViewState | None:
        r = self.replay
        if r is None or not self.active:
            return None
        elapsed = time.monotonic() - self._start
        pos = r.tempo.frame_at(elapsed) if r.tempo is not None else elapsed * r.bpm * 4 / 60
        lo, hi = pos - 64, pos + 64
        chords = [b if b.start > pos else ChordBlock(b.start, b.end, b.chord, b.symbol, b.bass, b.notes, PLAYED,
                                                     b.onset)
                  for b in r.chords if b.end >= lo and b.start <= hi]
        notes = [n for n in r.notes if n.end >= lo and n.start <= hi]
        return ViewState(pos, r.bpm, r.meter, 0, chords, notes, r.model, {}, f"replay: {r.name}", lanes=tuple(r.lanes))
