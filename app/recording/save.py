"""Saving: a journal becomes a type-1 MIDI file plus a JSON sidecar that says how it was made.

MIDI layout (480 ticks per quarter note, frame f at tick ``f * 120`` after the lead-in):
  track 0 ``Conductor``: the tempo map (a ``set_tempo`` at 0 and one where the tempo changed), time signature, one
  ``marker`` meta event per chord onset (the chord symbol);
  ``Melody`` (channel 1), ``Chords`` (channel 2), ``Bass`` (channel 3), ``Drums`` (channel 10, General MIDI's
  percussion; empty when the jam had no drums): program change at 0, then the notes.
A chord line's notes end where the next chord (or silence) starts; a comping style's notes (``pn`` / ``pf`` lines,
the chord line marked ``x``) are placed as they sounded, each at its own time and velocity. Every note-on has its
note-off: a melody note
struck again without an off is ended first, and whatever still sounds at the end is closed at the last event.
The player's controllers (sustain and the other pedals, mod wheel, pitch bend, pressure) are on the Melody track at
their times; a pedal still down or a bend off centre at the end is let go at the end.

Timing: events carry times on the engine's clock; the file's beat grid is anchored at frame 0 (``t0`` from the
header, or derived from the first chord event, else the first melody event, as ``t - frame * frame_seconds``).
A take whose tempo changed or that followed an external clock has a tempo map (``tempo.py``, from the journal's
``tempo`` and ``grid`` lines): every frame starts on its own tick and a moment between two frames is placed between
their ticks, so the chords stay on their beats and the melody where it was played against them; a MIDI player's
seconds are the take's. If the player played before frame 0 (during the count-in), whole bars of lead-in are added
in front so nothing is cut and bar lines still fall on the session's bars.

The sidecar ``<name>.mid.session.json`` (``output.sidecar_path``) says the starting tempo (``bpm``) and, where it
changed, ``tempo_changes`` ([frame, bpm] rows), and holds what a MIDI file cannot: app version,
model name and sha256, seed, settings, the token stream (``[frame, chord_token, melody_token]`` rows), timing
statistics, and whether the journal was finished or recovered after a crash.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import mido

from ..synth.synth import BASS, CHORDS, DEFAULT_PROGRAMS, MELODY
from .journal import Journal, read_journal
from .output import MIDI, check_target, sidecar_path, write_together
from .tempo import FRAMES_PER_BEAT, tempo_map

TICKS_PER_BEAT = 480
DRUMS = 9  # General MIDI's percussion channel (10)
TRACKS = (("Melody", MELODY), ("Chords", CHORDS), ("Bass", BASS), ("Drums", DRUMS))
PART_TRACKS = {"chords": "Chords", "bass": "Bass", "drums": "Drums"}  # the band's parts in "pn" / "pf" lines
CONTROLS = ("cc", "bend", "pressure", "keypressure")  # the player's pedals, bends and pressure, on the Melody track
TIMED = ("on", "off", "chord", "pn", "pf", *CONTROLS)  # the events that sound; other kinds (and later versions' kinds) are not placed
PEDALS = (64, 66, 67)  # sustain, sostenuto, soft: one left down at the end is lifted there
BEND_CENTRE = 8192
TIME_RESOLUTION = 1e-6  # seconds: the journal rounds its times to this (``recorder._t``)
MAX_TICK = 0x0FFFFFFF  # the largest delta time a MIDI file can hold (a 4-byte variable-length number)
MAX_TEMPO = 0xFFFFFF  # the slowest MIDI tempo, us a beat (3 bytes)
TICKS_PER_FRAME = TICKS_PER_BEAT // FRAMES_PER_BEAT
Note = tuple[int, int, int, int]  # (on_tick, off_tick, pitch, velocity)


class _Timeline:
    """Seconds on the engine clock -> ticks from the file's start, through the take's tempo map (``tempo.py``):
    frame f starts at tick ``(f + lead-in frames) * 120``, and a moment between two segment starts is placed at its
    segment's tempo."""

    def __init__(self, journal: Journal) -> None:
        h = journal.header
        num, den = h.get("meter") or [4, 4]
        timed = [e for e in journal.events if e["e"] in TIMED]
        tmap = tempo_map(h, journal.events, timed)
        self.tempo = tmap
        # An event further from frame 0 than half of what a MIDI file can hold (lead-in included) has a corrupt
        # time (a journal edited by hand, another clock): it is left out and said, not written as a file no
        # program reads (at 120 bpm that is 38 hours either side).
        limit = MAX_TICK / 2 / TICKS_PER_FRAME
        self.events = [e for e in timed if abs(tmap.position(e["t"])) <= limit]
        if len(self.events) < len(timed):
            span = MAX_TICK / 2 / TICKS_PER_BEAT * 60.0 / tmap.bpm
            problem = (f"{len(timed) - len(self.events)} event(s) timed more than {span / 3600:.0f} hours from the "
                       f"session's start; left out")
            if problem not in journal.problems:
                journal.problems.append(problem)
        timed = self.events
        earliest = min((e["t"] for e in timed), default=tmap.time_of(0))
        seg = tmap.segments[tmap.index_at(earliest)]  # the lead-in is counted at the tempo the earliest event had

        def bar_s(bpm: float) -> float:
            return num * (4.0 / den) * 60.0 / bpm

        # less than the journal's resolution (times are rounded to 1 us, t0 is not) early is on frame 0: a chord
        # struck at frame 0 used to add a whole bar of lead-in when its rounded time fell just before t0
        self.lead_in_bars = max(0, math.ceil((seg.time_of(0) - earliest - TIME_RESOLUTION) / bar_s(seg.bpm) - 1e-9))
        lead = self.lead_in_bars * num * FRAMES_PER_BEAT * 4 / den  # frames (a bar of 5/32 is 2.5)
        self.map = tmap.starting_at(-lead)
        first = self.map.segments[0]
        self.bpm = first.bpm  # the file's first tempo
        self.origin = first.time - first.frame * first.frame_seconds - self.lead_in_bars * bar_s(first.bpm)
        self.ticks = [round((s.frame + lead) * TICKS_PER_FRAME) for s in self.map.segments]  # each segment's start

    def tick(self, t: float) -> int:
        i = self.map.index_at(t)
        if i == 0:
            return max(0, round((t - self.origin) * self.bpm / 60.0 * TICKS_PER_BEAT))
        seg = self.map.segments[i]
        return max(0, round(self.ticks[i] + (t - seg.time) * seg.bpm / 60.0 * TICKS_PER_BEAT))

    def tempos(self) -> list[tuple[int, int]]:
        """(tick, MIDI tempo in us a beat) of every segment, the first at 0: the conductor's ``set_tempo`` events."""
        return [(0 if i == 0 else tick, midi_tempo(seg.bpm)) for i, (tick, seg)
                in enumerate(zip(self.ticks, self.map.segments, strict=True))]

    def seconds(self, tick: int) -> float:
        """Seconds from the file's start to ``tick`` as a MIDI player reckons them (``tempos``)."""
        tempos = self.tempos()
        out = 0.0
        for i, (start, tempo) in enumerate(tempos):
            stop = tempos[i + 1][0] if i + 1 < len(tempos) else tick
            if start < tick:
                out += mido.tick2second(min(stop, tick) - start, TICKS_PER_BEAT, tempo)
        return out


def midi_tempo(bpm: float) -> int:
    """``mido.bpm2tempo`` kept to what a MIDI tempo can say (a pause on an external clock is slower than 3.6 bpm)."""
    return max(1, min(MAX_TEMPO, mido.bpm2tempo(bpm)))


def _controls(events: list[dict[str, Any]], tl: _Timeline, end: int) -> list[tuple[int, mido.Message]]:
    """The Melody track's controller messages (``CONTROLS`` events, in time order), with a pedal still down or a
    bend off centre let go at ``end``."""
    out: list[tuple[int, mido.Message]] = []
    pedals: dict[int, int] = {}
    bend = BEND_CENTRE
    for ev in events:
        tick, kind = tl.tick(ev["t"]), ev["e"]
        if kind == "cc":
            out.append((tick, mido.Message("control_change", channel=MELODY, control=ev["c"], value=ev["v"])))
            pedals[ev["c"]] = ev["v"]
        elif kind == "bend":
            out.append((tick, mido.Message("pitchwheel", channel=MELODY, pitch=ev["v"] - BEND_CENTRE)))
            bend = ev["v"]
        elif kind == "pressure":
            out.append((tick, mido.Message("aftertouch", channel=MELODY, value=ev["v"])))
        elif kind == "keypressure":
            out.append((tick, mido.Message("polytouch", channel=MELODY, note=ev["p"], value=ev["v"])))
    out += [(end, mido.Message("control_change", channel=MELODY, control=c, value=0))
            for c in PEDALS if pedals.get(c, 0) >= 64]
    if bend != BEND_CENTRE:
        out.append((end, mido.Message("pitchwheel", channel=MELODY, pitch=0)))
    return out


def _collect(journal: Journal, tl: _Timeline) -> tuple[dict[str, list[Note]], list[tuple[int, str]], int]:
    """Notes per track, chord markers, and the last event's tick, from the events in time order."""
    notes: dict[str, list[Note]] = {name: [] for name, _ in TRACKS}
    markers: list[tuple[int, str]] = []
    melody_open: dict[int, tuple[int, int]] = {}
    band_open: dict[tuple[str, int], tuple[int, int]] = {}  # (track, pitch) -> (on tick, velocity)
    chord_open: list[tuple[str, int, int, int]] = []  # (track, pitch, on_tick, velocity)
    chord_key: tuple[int | None, tuple[int, ...]] | None = None
    chord_symbol: str | None = None
    events = sorted(tl.events, key=lambda e: e["t"])  # stable on ties
    end = 0

    def end_chord(tick: int) -> None:
        for track, pitch, on, vel in chord_open:
            notes[track].append((on, tick, pitch, vel))
        chord_open.clear()

    def end_melody(pitch: int, tick: int) -> None:
        """At least one tick long: a note-off at its note-on's tick would be written before it (a stuck note)."""
        on, vel = melody_open.pop(pitch)
        notes["Melody"].append((on, max(tick, on + 1), pitch, vel))

    def end_band(key: tuple[str, int], tick: int) -> None:
        on, vel = band_open.pop(key)
        notes[key[0]].append((on, max(tick, on + 1), key[1], vel))

    for ev in events:
        tick = tl.tick(ev["t"])
        end = max(end, tick)
        kind = ev["e"]
        if kind in ("pn", "pf"):
            key = (PART_TRACKS[ev["c"]], ev["p"])
            if key in band_open:
                end_band(key, tick)
            if kind == "pn":
                band_open[key] = (tick, ev["v"])
        elif kind == "on":
            pitch = ev["p"]
            if pitch in melody_open:  # struck again without a note-off: end the first one here
                end_melody(pitch, tick)
            melody_open[pitch] = (tick, max(1, min(127, ev.get("v", 90))))
        elif kind == "off":
            if ev["p"] in melody_open:
                end_melody(ev["p"], tick)
        elif kind == "chord":
            bass = ev.get("b")
            upper = tuple(sorted({p for p in ev.get("p", []) if p != bass}))
            key = (bass, upper)
            symbol = ev.get("s")
            if ev.get("on") or key != chord_key:
                end_chord(tick)
                if bass is not None and not ev.get("x"):
                    chord_open.append(("Bass", bass, tick, 90))
                if not ev.get("x"):
                    chord_open.extend(("Chords", p, tick, 80) for p in upper)
                starts = bass is not None or upper
                if symbol and starts and (ev.get("on") or symbol != chord_symbol):
                    markers.append((tick, symbol))
                chord_key, chord_symbol = (key, symbol) if starts else (None, None)
    for pitch in list(melody_open):
        end_melody(pitch, end)
    for key in list(band_open):
        end_band(key, end)
    for track, pitch, on, vel in chord_open:
        notes[track].append((on, max(end, on + 1), pitch, vel))
    return notes, markers, end


def _track(name: str, timed: list[tuple[int, float, mido.Message | mido.MetaMessage]], end: int) -> mido.MidiTrack:
    """Absolute-tick messages -> a track with delta times; at equal ticks note-offs come before note-ons."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    last = 0
    for tick, _order, msg in sorted(timed, key=lambda x: (x[0], x[1])):
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
    return track


def programs_from(header: dict[str, Any]) -> dict[int, int]:
    progs = dict(DEFAULT_PROGRAMS)
    given = (header.get("settings") or {}).get("programs") or {}
    progs.setdefault(DRUMS, 0)  # the standard kit
    for name, ch in (("melody", MELODY), ("chords", CHORDS), ("bass", BASS), ("drums", DRUMS)):
        if isinstance(given.get(name), int):
            progs[ch] = given[name]
    return progs


def build_midi(journal: Journal) -> tuple[mido.MidiFile, dict[str, Any]]:
    """The MIDI file and a summary (counts, duration, lead-in) for the sidecar."""
    mid, summary, _ = _build(journal)
    return mid, summary


def _build(journal: Journal) -> tuple[mido.MidiFile, dict[str, Any], _Timeline]:
    tl = _Timeline(journal)
    notes, markers, end_tick = _collect(journal, tl)
    end = max([end_tick, *(off for ns in notes.values() for _, off, _, _ in ns)])
    controls = _controls(sorted((e for e in tl.events if e["e"] in CONTROLS), key=lambda e: e["t"]), tl, end)
    num, den = journal.header.get("meter") or [4, 4]
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor: list[tuple[int, int, Any]] = [(tick, 0, mido.MetaMessage("set_tempo", tempo=tempo))
                                             for tick, tempo in tl.tempos()]
    conductor.insert(1, (0, 0, mido.MetaMessage("time_signature", numerator=num, denominator=den)))
    conductor += [(tick, 1, mido.MetaMessage("marker", text=text)) for tick, text in markers]
    mid.tracks.append(_track("Conductor", conductor, end))
    programs = programs_from(journal.header)
    for name, ch in TRACKS:
        timed: list[tuple[int, float, Any]] = [(0, 0, mido.Message("program_change", channel=ch, program=programs[ch]))]
        for on, off, pitch, vel in notes[name]:
            timed.append((on, 2, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
            timed.append((off, 1, mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
        if name == "Melody":  # between a tick's note-offs and its note-ons, in the order played
            timed += [(tick, 1.5, msg) for tick, msg in controls]
        mid.tracks.append(_track(name, timed, end))
    summary = {
        "melody_notes": len(notes["Melody"]),
        "melody_controls": len(controls),
        "chord_onsets": len(markers),
        "band_notes": {name.lower(): len(notes[name]) for name in ("Chords", "Bass", "Drums")},
        "duration_seconds": round(tl.seconds(end), 3),
        "lead_in_bars": tl.lead_in_bars,
    }
    return mid, summary, tl


def token_stream(journal: Journal) -> list[list[int | None]]:
    """[frame, chord_token, melody_token] per frame, in frame order (None where a side was not recorded)."""
    rows: dict[int, list[int | None]] = {}
    for ev in journal.events:
        if ev["e"] in ("chord", "tok") and "tok" in ev:
            row = rows.setdefault(ev["f"], [ev["f"], None, None])
            row[1 if ev["e"] == "chord" else 2] = ev["tok"]
    return [rows[f] for f in sorted(rows)]


def write_session(journal: Journal, midi_path: Path, closing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``midi_path`` (type-1 MIDI) and its sidecar from a journal as read; returns the summary (counts).

    ``closing``: the closing line the caller writes to the journal once these files are safely on disk (so the
    sidecar says finished, with the final counters, although the journal on disk is not closed yet); ignored when
    the journal is already closed. Both files go through the one output writer: both are complete on disk before
    either replaces its target, and an unwritable path is an ``OutputError``.
    """
    close = journal.close or closing
    mid, summary, tl = _build(journal)
    h = journal.header
    sidecar = {
        "format": 1,
        "app_version": h.get("app_version"),
        "model": h.get("model"),
        "seed": h.get("seed"),
        "bpm": h.get("bpm") if tl.tempo.segments[0].bpm == h.get("bpm") else round(tl.tempo.bpm, 3),
        **({"tempo_changes": [[seg.frame, round(seg.bpm, 3)] for seg in tl.tempo.segments[1:]]}
           if tl.tempo.changed else {}),
        "meter": h.get("meter"),
        "settings": h.get("settings"),
        "started": h.get("started"),
        "ended": (close or {}).get("ended"),
        "finished": close is not None,
        "recovered": bool((close or {}).get("recovered")),
        "midi": midi_path.name,
        "journal": str(journal.path.resolve()),
        **summary,
        "timing": _timing(journal, close),
        "tokens": token_stream(journal),
        "journal_issues": {
            "truncated_tail": journal.truncated or bool((close or {}).get("truncated_tail")),
            "skipped_lines": journal.skipped_lines,
            "problems": journal.problems,
        },
    }
    text = json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n"
    write_together([(midi_path, lambda f: mid.save(file=f)),
                    (sidecar_path(midi_path), lambda f: f.write(text.encode()))])
    return summary


def _timing(journal: Journal, close: dict[str, Any] | None) -> dict[str, Any]:
    """The journal's latest counters, the closing line's (written or still to be written) last."""
    out = journal.stats
    if close is not journal.close and isinstance((close or {}).get("stats"), dict):
        out.update(close["stats"])
    return out


def save_session(journal_path: str | os.PathLike, midi_path: str | os.PathLike,
                 closing: dict[str, Any] | None = None) -> Path:
    """Write ``midi_path`` and its sidecar from the journal at ``journal_path`` (``write_session``); returns the
    MIDI path. Works on an unfinished journal too (what ``recover`` uses); a refused path is an ``OutputError``."""
    midi_path = check_target(midi_path, MIDI)
    write_session(read_journal(journal_path), midi_path, closing)
    return midi_path
