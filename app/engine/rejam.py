"""Re-jam a MIDI melody: the live engine on a simulated clock, recorded like a live session.

Same planner, same causal constraint (chord f is promised before frame f is heard), so the output is what the
musician would have heard playing that melody live with the same model, settings and seed. As live, the model hears
the melody on the frame grid while the recording keeps it as played: each note is journaled at its own time and
velocity, so the output's ``Melody`` track is the input's (triplets stay triplets, the sustain pedal and bends too).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..recording.output import MIDI, check_target
from ..session import JamRequest, open_jam
from .bundle import load_bundle, resolve_model
from .midifile import InputLimits, MelodyFile, read_melody
from .options import JamSettings
from .planner import PlanSettings
from .policy import OnnxPolicy
from .voicing import Voicing, VoicingSettings


@dataclass
class RejamReport:
    out: Path
    frames: int
    chords: int
    plan_ms_median: float
    plan_ms_p99: float
    seconds: float


def rejam(melody_path: str | Path, model: str | None, out: str | Path, settings: PlanSettings = PlanSettings(),
          bpm: float | None = None, track: str | None = None, voicing: VoicingSettings = VoicingSettings(),
          threads: int = 1, teacher=None, limits: InputLimits | None = InputLimits(),
          melody: MelodyFile | None = None, band: Mapping[str, object] | None = None) -> RejamReport:
    """``teacher``: an ``OnnxTeacher`` that fills the intro's context chords, as in a live jam. ``limits``: how big
    and long a melody file is taken (``MidiFileError`` before the model loads); ``melody``: the file already read
    (``read_melody``), e.g. to say its warnings first; ``band``: how the band plays (``JamSettings`` fields of
    ``options.BAND_KNOBS``: style, bass, drums, dynamics range), by name."""
    import numpy as np

    t_start = time.perf_counter()
    check_target(out, MIDI, inputs=[melody_path])  # a refused output path costs no model run
    mf = melody or read_melody(melody_path, track, limits, bpm)
    settings = replace(settings, bar_beats=mf.meter[0] * 4 / mf.meter[1])  # the harmonic-rhythm grid follows the file
    policy = OnnxPolicy(load_bundle(resolve_model(model)), threads=threads)
    jam_settings = replace(JamSettings(bpm=bpm or mf.bpm, meter=mf.meter, plan=settings, voicing=voicing),
                           **dict(band or {}))
    events, i, c = mf.events(), 0, 0
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        jam = open_jam(JamRequest(policy, jam_settings, tmp, teacher=teacher, mode="rejam",
                                  header={"source": str(melody_path)}, simulated=True))
        rec, planner, clock, performer = jam.recorder, jam.planner, jam.clock, jam.performer
        n = len(mf.frames)
        for f in range(n + 1):
            while i < len(events) and (round(events[i][0]) <= f or f == n):  # heard in frame f, timed as played
                at, kind, pitch, vel = events[i]
                if kind == "on":
                    rec.melody_on(f, clock.time_of(at), pitch, vel)
                    performer.hear(vel)
                else:
                    rec.melody_off(f, clock.time_of(at), pitch)
                i += 1
            while c < len(mf.controls) and (round(mf.controls[c][0]) <= f or f == n):  # the pedal as played
                at, status, data = mf.controls[c]
                rec.melody_control(f, clock.time_of(at), status, data)
                c += 1
            if f == n:
                break
            # as live: the band's notes are worked out from the committed plan only, then frame f is played
            performer.prepare({g: planner.chord_for(g) for g in planner.committed if g >= f})
            performer.play(f, clock.time_of(f), planner.chord_for(f), clock.time_of(f + 1) - clock.time_of(f))
            result = planner.advance(*mf.frames[f])
            planner.idle()
            rec.melody_token(f, planner.history[-1][1])
            times.append(result.seconds * 1000)
        stats = {"frames": n, "plan_ms_median": float(np.median(times)) if times else 0.0,
                 "plan_ms_p99": float(np.percentile(times, 99)) if times else 0.0, "deadline_misses": 0}
        _, out = jam.finish(out, **stats)  # closes the journal once the files are written
    return RejamReport(Path(out), n, jam.performer.chords_struck, stats["plan_ms_median"], stats["plan_ms_p99"],
                       time.perf_counter() - t_start)


__all__ = ["InputLimits", "RejamReport", "Voicing", "rejam"]
