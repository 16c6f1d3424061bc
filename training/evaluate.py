"""`comper-train eval`: every chord system on the same held-out melodies, the same seeds, one report.

Protocols, all strictly online for online policies (chord t sees melody < t only):

* ``fixed``: the first 256 frames of N songs of the split (test, or OpenEWLD for ``ood``);
* ``tritone``: the same melodies transposed up 6 semitones from beat 16 on; the per-beat harmony curve shows
  how fast each system follows (the ground truth is transposed with the melody: the ceiling);
* ``jam``: each online policy improvising with the learned melody agent (``--melody-agent RUN``), no data;
* ``live`` (``--protocol live``): the same melodies, each bundle run through the app's own engine exactly as
  ``comper rejam`` runs it (the planner with lookahead / commit / listen-first, the teacher's intro fill and the
  decode-time steering given on the command line, chord f promised before frame f is heard). The figures are the
  music a player hears. Every system, the ground truth included, is measured on the frames after the
  listen-first intro, where Comper plays.

Metrics come from ``training.evaluation`` (harmony, diversity, timing); the diversity embedding is the
chord encoder of a contrastive reward model (``--embedding RUN``, as in GAPT) or, without one, the model-free
chord-bigram histogram. The report is ``report.md``,
``metrics.json`` and PNG plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .data import tokens as T
from .data.cache import Cache, DataError
from .data.cache import load as load_cache
from .data.codec import Frames, melody_tokens, transpose
from .data.sources import TRAINING_SOURCES
from .evaluation import diversity as D
from .evaluation import timing as TM
from .evaluation.harmony import CHORD_PC, beats_to_recover, note_in_chord, per_beat_note_in_chord
from .evaluation.heard import measure_heard
from .evaluation.systems import System, baseline_chords, load_system, most_frequent_chord
from .generate import chord_indices, generate_jam, generate_offline, generate_online

WINDOW = 256
CHANGE_BEAT = 16
BATCH = 64


@dataclass
class Songs:
    """One protocol's inputs: melody frames and ground-truth chords per song (already cut to the window)."""

    frames: list[Frames]
    keys: list[list | None]
    meters: list[tuple[int, int]] | None = None
    first_beats: list[float] | None = None  # the score beat of frame 0 (the bar phase)

    def bar_frames(self, i: int) -> int:
        num, den = self.meters[i] if self.meters else (4, 4)
        return max(1, int(round(num * 4 / den * 4)))

    def downbeat_frame(self, i: int) -> int:
        """A frame on a bar line: frame 0 sits ``first_beat`` beats into the score."""
        first = self.first_beats[i] if self.first_beats else 0.0
        return int(round(-first * 4)) % self.bar_frames(i)


@dataclass
class Outputs:
    melody: list[np.ndarray]
    melody_onset: list[np.ndarray]
    chords: list[np.ndarray]
    chord_onset: list[np.ndarray]


def select_songs(cache: Cache, split: str, n: int | None) -> list[int]:
    sources = ("openewld",) if split == "ood" else TRAINING_SOURCES
    songs = cache.select(split, sources, with_chords=True)
    if not songs:
        raise DataError(f"{cache.path}: no songs with chords in split {split!r}")
    if n is not None and n > len(songs):
        raise DataError(f"--n {n} is larger than the {split} split ({len(songs)} songs in {cache.path})")
    return songs[:n] if n else songs


def fixed_songs(cache: Cache, ids: list[int]) -> Songs:
    frames = [cache.frames(i).crop(0, min(len(cache.frames(i)), WINDOW)) for i in ids]
    return Songs(frames, [cache.songs[i].get("key") for i in ids],
                 [tuple(cache.songs[i].get("meter") or (4, 4)) for i in ids],
                 [float(cache.songs[i].get("first_beat", 0.0)) for i in ids])


def tritone_songs(songs: Songs) -> Songs:
    """The melody (and, for the ground truth, the chords) up a tritone from beat 16 on."""
    out = []
    for f in songs.frames:
        cut = min(CHANGE_BEAT * 4, len(f))
        head, tail = f.crop(0, cut), transpose(f.crop(cut, len(f)), 6)
        if cut < len(f):  # a note / chord sounding across the change is struck again, transposed
            tail.melody_onset[0] = tail.melody[0] >= 0
            tail.chord_onset[0] = tail.chord[0] >= 0
        out.append(Frames(*(np.concatenate([getattr(head, k), getattr(tail, k)]) for k in
                            ("melody", "melody_onset", "chord", "chord_onset"))))
    return Songs(out, songs.keys, songs.meters, songs.first_beats)


def run_system(system: System, songs: Songs, seed: int, temperature: float, frequent: int) -> Outputs:
    """The system's chords for every song (chord index and onset per frame)."""
    mel = [f.melody for f in songs.frames]
    mon = [f.melody_onset for f in songs.frames]
    if system.kind == "truth":
        return Outputs(mel, mon, [f.chord.astype(np.int64) for f in songs.frames], [f.chord_onset for f in songs.frames])
    if system.kind == "baseline":
        rng = np.random.default_rng(seed)
        pairs = [baseline_chords(system.spec.split(":", 1)[1], m, k, rng, frequent) for m, k in zip(mel, songs.keys)]
        return Outputs(mel, mon, [p[0] for p in pairs], [p[1] for p in pairs])
    gen = torch.Generator().manual_seed(seed)
    chords, onsets = [], []
    for a in range(0, len(songs.frames), BATCH):
        batch = songs.frames[a:a + BATCH]
        n = max(len(f) for f in batch)
        tokens = np.full((len(batch), n), T.SILENCE, np.int64)
        for r, f in enumerate(batch):
            tokens[r, :len(f)] = melody_tokens(f)
        fn = generate_online if system.kind == "online" else generate_offline
        out = fn(system.model, torch.as_tensor(tokens), temperature, gen).numpy()
        for r, f in enumerate(batch):
            chords.append(chord_indices(out[r, :len(f)]))
            onsets.append(out[r, :len(f)] >= T.CHORD_ON)
    return Outputs(mel, mon, chords, onsets)


@dataclass(frozen=True)
class LiveProtocol:
    """How the app's engine is set up for ``--protocol live``: the plan settings (lookahead, commit, listen-first,
    temperature, steering; the seed and the meter are set per song) and the intro-fill teacher bundle, if any."""

    plan: object  # app.engine.planner.PlanSettings
    teacher: Path | None = None
    jobs: int = 1  # worker processes (songs are independent; each has its own seed)

    @property
    def skip(self) -> int:
        """Frames of the listen-first intro, left out of every system's figures."""
        return self.plan.listen


_LIVE_ENGINES: dict = {}  # per process: (card path, teacher path) -> (OnnxPolicy, OnnxTeacher | None)


def _live_engine(card: str, teacher: str | None):
    from app.engine.bundle import load_bundle
    from app.engine.policy import OnnxPolicy
    from app.engine.teacher import OnnxTeacher

    key = (card, teacher)
    if key not in _LIVE_ENGINES:
        _LIVE_ENGINES[key] = (OnnxPolicy(load_bundle(card)),
                              OnnxTeacher(load_bundle(teacher)) if teacher else None)
    return _LIVE_ENGINES[key]


def _live_song(job: tuple) -> np.ndarray:
    """One song through the app's planner on a simulated clock: the chord token of every frame."""
    from app.engine.planner import Planner
    from app.engine.simulate import simulate

    card, teacher_card, plan, melody, onset = job
    policy, teacher = _live_engine(card, teacher_card)
    intro = teacher.intro_filler(plan.seed, plan.temperature) if teacher is not None else None
    jam = simulate(Planner(policy, plan, intro=intro), [(int(p), bool(o)) for p, o in zip(melody, onset)])
    return np.asarray(jam.chords, np.int64)


def run_live(system: System, songs: Songs, seed: int, live: LiveProtocol) -> Outputs:
    """Every song through the app's planner on a simulated clock, as ``comper rejam`` plays it (song i with seed
    ``seed + i``); ``live.jobs`` worker processes share the songs, each with its own onnxruntime session."""
    from dataclasses import replace

    card = getattr(system.model, "card_path", None)
    if system.kind != "online" or card is None:
        raise DataError(f"--system {system.name}={system.spec}: the live protocol runs model bundles through the "
                        f"app's engine; export the run first (comper-train export)")
    teacher = str(live.teacher) if live.teacher else None
    jobs = [(str(card), teacher, replace(live.plan, seed=seed + i, bar_beats=songs.bar_frames(i) / 4,
                                         downbeat_frame=songs.downbeat_frame(i)), f.melody, f.melody_onset)
            for i, f in enumerate(songs.frames)]
    if live.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(live.jobs) as pool:  # spawn: no onnxruntime state crosses a fork
            tokens = pool.map(_live_song, jobs, chunksize=max(1, len(jobs) // (4 * live.jobs)))
    else:
        tokens = [_live_song(j) for j in jobs]
    return Outputs([f.melody for f in songs.frames], [f.melody_onset for f in songs.frames],
                   [chord_indices(t) for t in tokens], [t >= T.CHORD_ON for t in tokens])


def crop_outputs(out: Outputs, skip: int) -> Outputs:
    return Outputs(*([x[skip:] for x in getattr(out, k)] for k in ("melody", "melody_onset", "chords", "chord_onset")))


def run_jam(system: System, agent, n: int, seed: int, temperature: float) -> Outputs:
    gen = torch.Generator().manual_seed(seed)
    chords, melody = [], []
    for a in range(0, n, BATCH):
        c, m = generate_jam(system.model, agent, min(BATCH, n - a), WINDOW, temperature, gen)
        chords.append(c.numpy())
        melody.append(m.numpy())
    c, m = np.concatenate(chords), np.concatenate(melody)
    mel = np.where((m >= T.NOTE_HOLD) & (m < T.CHORD_HOLD), (m - T.NOTE_HOLD) % T.N_PITCHES, -1)
    return Outputs(list(mel), list((m >= T.NOTE_ON) & (m < T.CHORD_HOLD)), [chord_indices(r) for r in c],
                   list(c >= T.CHORD_ON))


def bootstrap_ci(values: list[float], seed: int, n: int = 2000) -> list[float]:
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return [float("nan"), float("nan")]
    means = v[np.random.default_rng(seed).integers(0, len(v), (n, len(v)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


class ChordEmbedder:
    """Chord-sequence embeddings for the Vendi score: the contrastive reward model's chord encoder (GAPT B.3), or
    the model-free chord-bigram histogram when no model is given."""

    def __init__(self, contrastive_run: Path | None = None, model: torch.nn.Module | None = None) -> None:
        self.model = model
        self.name = "chord-bigram histogram (model-free)" if model is None else "chord encoder of a contrastive model"
        if contrastive_run is not None:
            from .models.rewards import ContrastiveReward, load_reward

            model, _ = load_reward(contrastive_run)
            if not isinstance(model, ContrastiveReward):
                raise DataError(f"--embedding {contrastive_run}: not a contrastive reward model run")
            self.model, self.name = model, f"chord encoder of the contrastive reward model {contrastive_run}"

    @torch.no_grad()
    def __call__(self, chords: list[np.ndarray], onsets: list[np.ndarray]) -> np.ndarray:
        if self.model is None:
            return np.stack([D.bigram_embedding(c, o) for c, o in zip(chords, onsets)])
        n = max(len(c) for c in chords)
        win = np.full((len(chords), n + 2), T.PAD, np.int64)
        win[:, 0] = T.BOS
        for r, (c, o) in enumerate(zip(chords, onsets)):
            tok = np.where(c < 0, T.SILENCE, np.where(o, T.CHORD_ON + c, T.CHORD_HOLD + c))
            win[r, 1:1 + len(c)] = tok
        device = next(self.model.parameters()).device  # an RL run's encoder may sit on the GPU
        return torch.cat([self.model.embed_chords(torch.as_tensor(win[a:a + BATCH], device=device))
                          for a in range(0, len(win), BATCH)]).cpu().numpy()


def measure(out: Outputs, reference_hist: np.ndarray, seed: int, embedder: ChordEmbedder | None = None,
            songs: Songs | None = None) -> dict:
    """Every metric of one system on one protocol (``songs``: their keys and meters, for the listener's measures;
    4/4 and each melody's own key without them)."""
    per_song = [note_in_chord(m, c) for m, c in zip(out.melody, out.chords)]
    counted = [r for r in per_song if r is not None]
    emb = (embedder or ChordEmbedder())(out.chords, out.chord_onset)
    hist = TM.pooled_onset_interval_histogram(out.melody_onset, out.chord_onset)
    freq = np.bincount(np.concatenate([c[c >= 0] for c in out.chords] or [np.zeros(0, np.int64)]),
                       minlength=len(CHORD_PC))
    lengths = np.concatenate([TM.chord_events(c, o)[1] for c, o in zip(out.chords, out.chord_onset)] or [[]])
    length_hist = np.bincount(np.minimum(lengths.astype(int), D.LENGTH_BINS - 1), minlength=D.LENGTH_BINS)
    curve = per_beat_note_in_chord(out.melody, out.chords, n_beats=WINDOW // 4)
    events = [TM.chord_events(c, o)[2] for c, o in zip(out.chords, out.chord_onset)]

    def mean(values):
        v = [x for x in values if x is not None and np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    n = len(out.chords)
    heard = measure_heard(out.chords, out.chord_onset, out.melody,
                          songs.keys if songs else [None] * n,
                          [songs.bar_frames(i) for i in range(n)] if songs else [16] * n)
    return {
        "harmony": {"mean": mean(counted), "ci95": bootstrap_ci(counted, seed), "n": len(counted)},
        **heard,
        "vendi": D.vendi_score(emb),
        "chord_entropy": max(0.0, D.chord_symbol_entropy(out.chords)),  # clamp -0.0 from float noise
        "chord_length_entropy": max(0.0, D.chord_length_entropy(out.chords, out.chord_onset)),
        "distinct_4grams": D.distinct_progressions(events, n=4),
        "onset_interval_emd_x1e3": 1e3 * TM.onset_interval_emd(hist, reference_hist) if hist.sum() else float("nan"),
        "chord_silence_ratio": mean([TM.chord_silence_ratio(m, c) for m, c in zip(out.melody, out.chords)]),
        "pitch_classes_per_chord": mean([TM.mean_pitch_classes_per_chord(c, o)
                                         for c, o in zip(out.chords, out.chord_onset)]),
        "early_stop_ratio": mean([TM.early_stop_ratio(m, c) for m, c in zip(out.melody, out.chords)]),
        "per_beat": [None if not np.isfinite(x) else float(x) for x in curve],
        "chord_frequency": freq.tolist(),
        "chord_length_hist": length_hist.tolist(),
    }


def evaluate(systems: dict[str, str], cache: Cache | Path, split: str = "test", n: int | None = None, seed: int = 0,
             temperature: float = 1.0, melody_agent: Path | None = None, embedding: Path | None = None,
             live: LiveProtocol | None = None, log=print) -> dict:
    """``live``: run the ``live`` protocol (the app's engine) instead of ``fixed`` and ``tritone``."""
    cache = cache if isinstance(cache, Cache) else load_cache(cache)
    embedder = ChordEmbedder(embedding)
    loaded = [load_system("ground truth", "truth")] + [load_system(k, v) for k, v in systems.items()]
    ids = select_songs(cache, split, n)
    fixed = fixed_songs(cache, ids)
    reference = TM.pooled_onset_interval_histogram([f.melody_onset for f in fixed.frames],
                                                   [f.chord_onset for f in fixed.frames])
    frequent = most_frequent_chord(cache)
    protocols = {"live": fixed} if live else {"fixed": fixed, "tritone": tritone_songs(fixed)}
    result = {"split": split, "songs": len(ids), "seed": seed, "temperature": temperature, "window": WINDOW,
              "diversity_embedding": embedder.name, "protocols": {}, "seconds": {}}
    if live:
        result["live"] = {"plan": asdict(live.plan), "teacher": str(live.teacher) if live.teacher else None,
                          "measured_from_frame": live.skip}
    for pname, songs in protocols.items():
        result["protocols"][pname] = {}
        for system in loaded:
            t0 = time.perf_counter()
            if pname == "live":
                live_run = system.kind == "online"
                out = run_live(system, songs, seed, live) if live_run else run_system(system, songs, seed,
                                                                                      temperature, frequent)
                out = crop_outputs(out, live.skip)
            else:
                out = run_system(system, songs, seed, temperature, frequent)
            m = measure(out, reference, seed, embedder, songs)
            if pname == "live" and system.kind == "online":
                m["plan"] = asdict(live.plan)
            if pname == "tritone":
                curve = np.array([np.nan if x is None else x for x in m["per_beat"]])
                m["beats_to_recover"] = beats_to_recover(curve, CHANGE_BEAT)
            m["seconds"] = round(time.perf_counter() - t0, 2)
            result["protocols"][pname][system.name] = m
            log(f"{pname:<8} {system.name:<22} harmony {m['harmony']['mean']:.3f}  vendi {m['vendi']:.2f}  "
                f"changes/bar {m['changes_per_bar']:.2f}  off-beat {m['offbeat_onsets']:.3f}  "
                f"out-of-key {m['out_of_key']:.3f}  ({m['seconds']:.1f} s)")
    if melody_agent is not None:
        from .checkpoints import load_model

        agent, ckpt = load_model(Path(melody_agent))
        if ckpt["kind"] != "melody":
            raise DataError(f"--melody-agent {melody_agent}: holds a {ckpt['kind']} model, not a melody agent")
        result["protocols"]["jam"] = {}
        for system in loaded:
            if system.kind != "online":
                continue
            t0 = time.perf_counter()
            m = measure(run_jam(system, agent, len(ids), seed, temperature), reference, seed, embedder)
            m["seconds"] = round(time.perf_counter() - t0, 2)
            result["protocols"]["jam"][system.name] = m
            log(f"jam      {system.name:<22} harmony {m['harmony']['mean']:.3f}  vendi {m['vendi']:.2f}")
    return result


SAME_SETTINGS = ("split", "songs", "seed", "temperature", "window", "diversity_embedding")


def merge_results(base: dict, extra: dict, where: str = "the report") -> dict:
    """``base`` with ``extra``'s systems added (replaced where named twice). Each system is sampled with its own
    seeded generator, so a system evaluated later scores exactly as it would have in the first run; the
    settings must match, or the table would compare different things."""
    diff = [k for k in SAME_SETTINGS if base.get(k) != extra.get(k)]
    if diff:
        raise DataError(f"{where}: cannot add to it: {', '.join(f'{k} {base.get(k)!r} vs {extra.get(k)!r}' for k in diff)}")
    merged = json.loads(json.dumps(base))
    for pname, systems in extra["protocols"].items():
        for name, m in systems.items():
            if name != "ground truth" or name not in merged["protocols"].setdefault(pname, {}):
                merged["protocols"][pname][name] = m
    merged.setdefault("seconds", {}).update(extra.get("seconds", {}))
    return merged


def steer_label(steer: dict) -> str:
    """A steering setting in a table cell: its preset's name, or its knobs."""
    from app.engine.steering import PRESETS, SteerSettings

    settings = SteerSettings(**steer)
    name = next((n for n, p in PRESETS.items() if p == settings), None)
    return name or ", ".join(f"{k} {v}" for k, v in steer.items())


def plan_label(plan: dict | None, header: dict) -> str:
    """The steering of one system, and its timing where it differs from the report's header."""
    if plan is None:
        return "-"
    extra = [f"{k.split('_')[0]} {plan[k]:g}" for k in ("lookahead_beats", "commit_beats", "listen_beats", "temperature")
             if plan.get(k) != header.get(k)]
    return ", ".join([steer_label(plan["steer"])] + extra)


def write_report(result: dict, out: Path) -> None:
    from .evaluation import plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    split = {"test": "in-distribution test split", "valid": "validation split", "ood": "OpenEWLD (out of distribution)"}
    lines = [f"# Chord systems on the {split.get(result['split'], result['split'])}", "",
             f"{result['songs']} songs, the first {result['window']} frames (64 beats) of each; seed {result['seed']}, "
             f"temperature {result['temperature']}. Online policies are strictly online (chord t sees melody < t). "
             f"Diversity embedding: {result['diversity_embedding']}. Intervals are bootstrap 95% CIs over songs.", ""]
    if "live" in result:
        plan = result["live"]["plan"]
        lines += [f"Protocol `live`: every song through the app's engine as `comper rejam` plays it: lookahead "
                  f"{plan['lookahead_beats']:g} beats, commit {plan['commit_beats']:g}, listen-first "
                  f"{plan['listen_beats']:g} beats (measured after them, the ground truth too), intro teacher "
                  f"{result['live']['teacher'] or 'none'}. Steering per system in the last column.", ""]
    heads = {"fixed": "Fixed melodies", "tritone": "Melody transposed +6 semitones at beat 16",
             "jam": "Model-model jamming with the melody agent", "live": "As heard (the live engine)"}
    nan = float("nan")
    for pname, systems in result["protocols"].items():
        truth_cpb = systems.get("ground truth", {}).get("changes_per_bar", nan)
        lines += [f"## {heads.get(pname, pname)}", "",
                  "| system | harmony (95% CI) | n | Vendi | chord entropy | changes/bar (x truth) | off-beat onsets | "
                  "out-of-key time | beats/chord | length entropy | distinct 4-grams | onset EMD x1e3 | silence | "
                  "pcs/chord | early stop |" + (" beats to recover |" if pname == "tritone" else "")
                  + (" steering |" if pname == "live" else ""),
                  "|---" * (15 + (pname == "tritone") + (pname == "live")) + "|"]
        for name, m in systems.items():
            h = m["harmony"]
            cpb = m.get("changes_per_bar", nan)
            row = (f"| {name} | {h['mean']:.3f} ({h['ci95'][0]:.3f}-{h['ci95'][1]:.3f}) | {h['n']} | {m['vendi']:.2f} | "
                   f"{m['chord_entropy']:.2f} | {cpb:.2f} ({cpb / truth_cpb:.2f}) | {m.get('offbeat_onsets', nan):.3f} | "
                   f"{m.get('out_of_key', nan):.3f} | {m.get('mean_chord_beats', nan):.2f} | "
                   f"{m['chord_length_entropy']:.2f} | {m['distinct_4grams']:.3f} | "
                   f"{m['onset_interval_emd_x1e3']:.1f} | {m['chord_silence_ratio']:.3f} | "
                   f"{m['pitch_classes_per_chord']:.2f} | {m['early_stop_ratio']:.3f} |")
            if pname == "tritone":
                rec = m.get("beats_to_recover")
                row += f" {rec if rec is not None else 'never'} |"
            if pname == "live":
                row += f" {plan_label(m.get('plan'), result['live']['plan'])} |"
            lines.append(row)
        lines.append("")
    figures = {"harmony_vs_diversity.png": "Harmony vs diversity (fixed melodies)",
               "adaptation.png": "Per-beat harmony, melody +6 semitones at beat 16",
               "chord_frequency.png": "Chord frequencies (fixed melodies)",
               "chord_lengths.png": "Chord lengths (fixed melodies)"}
    main = result["protocols"].get("fixed") or result["protocols"]["live"]
    plots.harmony_vs_diversity(main, out / "harmony_vs_diversity.png", figures["harmony_vs_diversity.png"])
    if "tritone" in result["protocols"]:
        plots.adaptation_curves(result["protocols"]["tritone"], out / "adaptation.png", CHANGE_BEAT,
                                figures["adaptation.png"])
    else:
        del figures["adaptation.png"]
    plots.chord_frequencies(main, out / "chord_frequency.png", figures["chord_frequency.png"])
    plots.chord_lengths(main, out / "chord_lengths.png", figures["chord_lengths.png"])
    lines += ["## Figures", ""] + [f"![{t}]({f})" for f, t in figures.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
