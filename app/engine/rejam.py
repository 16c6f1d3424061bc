"""Re-jam a MIDI melody: the live engine on a simulated clock, recorded like a live session.

Same planner, same causal constraint (chord f is promised before frame f is heard), so the output is what the
musician would have heard playing that melody live with the same model, settings and seed.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..recording import Recorder
from .bundle import load_bundle, resolve_model
from .clock import FrameClock
from .midifile import read_melody
from .planner import Planner, PlanSettings
from .policy import OnnxPolicy
from .voicing import Voicing, VoicingSettings, voice


@dataclass
class RejamReport:
    out: Path
    frames: int
    chords: int
    plan_ms_median: float
    plan_ms_p99: float
    seconds: float


def rejam(melody_path: str | Path, model: str, out: str | Path, settings: PlanSettings = PlanSettings(),
          bpm: float | None = None, track: str | None = None, voicing: VoicingSettings = VoicingSettings(),
          threads: int = 1) -> RejamReport:
    import numpy as np

    t_start = time.perf_counter()
    mf = read_melody(melody_path, track)
    bundle = load_bundle(resolve_model(model))
    planner = Planner(OnnxPolicy(bundle, threads=threads), settings)
    vocab = planner.vocab
    clock = FrameClock(bpm or mf.bpm, start=0.0)
    header = {"bpm": clock.bpm, "meter": list(mf.meter), "model_name": bundle.name,
              "model_sha256": bundle.card["onnx"]["sha256"], "seed": settings.seed, "t0": 0.0,
              "plan": settings, "voicing": voicing, "source": str(melody_path), "mode": "rejam"}
    ons: dict[int, list] = {}
    offs: dict[int, list] = {}
    for on, off, pitch, vel in mf.notes:
        ons.setdefault(on, []).append((pitch, vel))
        offs.setdefault(off, []).append(pitch)
    times, n_chords, last_tok, last_voicing = [], 0, None, None
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(tmp, header)
        n = len(mf.frames)
        for f in range(n + 1):
            t = clock.time_of(f)
            for pitch in offs.get(f, []):
                rec.melody_off(f, t, pitch)
            if f == n:
                break
            for pitch, vel in ons.get(f, []):
                rec.melody_on(f, t, pitch, vel)
            tok = planner.chord_for(f)
            if tok != last_tok and (vocab.is_onset(tok) or tok not in vocab.chord_info):
                info = vocab.chord_info.get(tok)
                if info is None:
                    rec.chord(f, t, None, [], None, True, tok)
                    last_voicing = None
                else:
                    last_voicing = voice(info["root"], info["pitch_classes"], voicing, last_voicing)
                    rec.chord(f, t, info["symbol"], list(last_voicing.notes), last_voicing.bass, True, tok)
                    n_chords += 1
            last_tok = tok
            result = planner.advance(*mf.frames[f])
            rec.melody_token(f, planner.history[-1][1])
            times.append(result.seconds * 1000)
        stats = {"frames": n, "plan_ms_median": float(np.median(times)) if times else 0.0,
                 "plan_ms_p99": float(np.percentile(times, 99)) if times else 0.0, "deadline_misses": 0}
        rec.close(**stats)
        out = rec.save(out)
    return RejamReport(Path(out), n, n_chords, stats["plan_ms_median"], stats["plan_ms_p99"],
                       time.perf_counter() - t_start)


__all__ = ["RejamReport", "Voicing", "rejam"]
