"""`comper`: jam from a terminal, re-jam a MIDI file, list ports and models, render, benchmark, check the setup.

Errors a musician can fix (a port that does not exist, a broken bundle, a corrupt MIDI file) print one line and
exit with status 2; nothing here needs torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from .engine.bundle import BundleError, load_bundle, resolve_model, shipped_bundles


USER_ERRORS = {"BundleError", "MidiFileError", "RenderError", "SoundfontNotFound", "PortError", "JournalError"}


def _models(args: argparse.Namespace) -> int:
    rows = []
    for card_path in shipped_bundles() + [resolve_model(p) for p in args.paths]:
        try:
            b = load_bundle(card_path)
            m = b.card.get("model", {})
            rows.append({"name": b.name, "path": str(card_path), "ok": True, "parameters": m.get("parameters"),
                         "stage": b.card.get("training", {}).get("stage"), "int8": bool((b.card.get("int8") or {}).get("file"))})
        except BundleError as e:
            rows.append({"name": card_path.stem, "path": str(card_path), "ok": False, "error": str(e)})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no model bundles found")
    for r in rows if not args.json else []:
        state = f"{r['parameters'] / 1e6:.1f}M parameters, {r['stage']}" if r["ok"] else f"REFUSED: {r['error']}"
        print(f"{r['name']:<24} {state}  ({r['path']})")
    return 0 if all(r["ok"] for r in rows) else 2


def sessions_dir() -> "Path":
    import os
    from pathlib import Path

    return Path(os.environ.get("COMPER_SESSIONS", Path.home() / "Comper" / "sessions"))


def _list_ports(args: argparse.Namespace) -> int:
    from .midi import available_apis, list_ports

    apis = [args.midi_api] if args.midi_api else available_apis()
    found = [list_ports(api) for api in apis]
    if args.json:
        print(json.dumps([{"api": p.api, "inputs": p.inputs, "outputs": p.outputs, "error": p.error} for p in found],
                         indent=1))
        return 0
    for p in found:
        print(f"{p.api}: " + (p.error or f"{len(p.inputs)} input(s), {len(p.outputs)} output(s)"))
        for name in p.inputs:
            print(f"  in   {name}")
        for name in p.outputs:
            print(f"  out  {name}")
    if not any(p.inputs or p.outputs for p in found):
        print("no MIDI devices (the built-in synth still plays; `comper rejam` works with MIDI files)")
    return 0


def _recover(args: argparse.Namespace) -> int:
    from .recording import find_unfinished, recover

    journals = [args.journal] if args.journal else find_unfinished(args.dir or sessions_dir())
    if not journals:
        print(f"no unfinished session in {args.dir or sessions_dir()}")
    for j in journals:
        print(f"recovered {j} -> {recover(j)}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Check every part a jam needs; exit non-zero when something is missing."""
    import onnxruntime

    from .midi import available_apis, list_ports
    from .synth import BuiltinSynth, find_soundfont

    problems = 0

    def line(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"[{'ok' if ok else '!!'}] {what}: {detail}")

    apis = available_apis()
    line(bool(apis), "MIDI backends", ", ".join(apis) or "python-rtmidi has no backend")
    for api in apis:
        p = list_ports(api)
        print(f"     {api}: " + (p.error or f"inputs {p.inputs or '-'}, outputs {p.outputs or '-'}"))
    try:
        sf = find_soundfont(args.soundfont)
        line(True, "soundfont", str(sf))
        synth = BuiltinSynth(sf)
        driver = synth.start()
        line(True, "audio", f"driver {driver}" if driver != "silent" else f"silent mode ({synth.reason})")
        synth.close()
    except Exception as e:  # noqa: BLE001 - report, do not crash, the doctor's job
        line(False, "synth", str(e))
    line(True, "onnxruntime", f"{onnxruntime.__version__}, providers {', '.join(onnxruntime.get_available_providers())}")
    cards = shipped_bundles()
    line(bool(cards), "shipped models", ", ".join(c.stem for c in cards) or "none in the models folder")
    for card in cards:
        try:
            load_bundle(card)
        except BundleError as e:
            line(False, f"model {card.stem}", str(e))
    return 1 if problems else 0


def _bench(args: argparse.Namespace) -> int:
    """Per-frame planning cost on a simulated clock at the given settings."""
    import numpy as np

    from .engine.planner import Planner, PlanSettings
    from .engine.policy import OnnxPolicy

    policy = OnnxPolicy(load_bundle(resolve_model(args.model)), threads=args.threads)
    settings = PlanSettings(lookahead_beats=args.lookahead, commit_beats=args.commit, listen_beats=0, seed=0)
    planner = Planner(policy, settings)
    rng = np.random.default_rng(0)
    pitch, times, calls = -1, [], []
    for f in range(args.frames):
        if f % 2 == 0:  # a busy melody: a new note (or rest) every 8th note
            pitch = int(rng.choice([-1, 60, 62, 64, 65, 67, 69, 71, 72]))
        r = planner.advance(pitch, f % 2 == 0 and pitch >= 0)
        times.append(r.seconds * 1000)
        calls.append(r.model_calls)
    frame_ms = 60_000 / (args.bpm * 4)
    med, p99 = statistics.median(times), float(np.percentile(times, 99))
    print(f"model {policy.bundle.name}, {args.frames} frames, lookahead {args.lookahead} beats, commit {args.commit}, "
          f"{args.threads} thread(s)")
    print(f"planning per frame: median {med:.2f} ms, p99 {p99:.2f} ms, max {max(times):.2f} ms; "
          f"{statistics.mean(calls):.2f} model calls per frame")
    print(f"a frame at {args.bpm:g} bpm is {frame_ms:.1f} ms: p99 uses {100 * p99 / frame_ms:.1f}% of it")
    return 0


def _rejam(args: argparse.Namespace) -> int:
    from .engine.planner import PlanSettings
    from .engine.rejam import rejam

    settings = PlanSettings(lookahead_beats=args.lookahead, commit_beats=args.commit, listen_beats=args.listen,
                            temperature=args.temperature, seed=args.seed)
    r = rejam(args.melody, args.model, args.output, settings, bpm=args.bpm, track=args.track)
    print(f"wrote {r.out} (+ {r.out.with_suffix('.json').name}): {r.frames} frames, {r.chords} chords; planning "
          f"median {r.plan_ms_median:.2f} ms, p99 {r.plan_ms_p99:.2f} ms per frame; {r.seconds:.1f} s in all")
    return 0


def _render(args: argparse.Namespace) -> int:
    from .synth import render_midi_to_wav

    info = render_midi_to_wav(args.midi, args.output, soundfont=args.soundfont)
    print(f"wrote {info.wav_path}: {info.seconds:.1f} s of audio, {info.notes} notes, soundfont {info.soundfont}")
    return 0


def _add_plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="online-mle-small", help="a shipped model name or a bundle path")
    p.add_argument("--bpm", type=float, help="tempo (default: the file's, else 120)")
    p.add_argument("--lookahead", type=float, default=4, help="beats planned ahead")
    p.add_argument("--commit", type=float, default=4, help="beats of the plan that are frozen")
    p.add_argument("--listen", type=float, default=8, help="beats the player plays alone first")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="comper", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    m = sub.add_parser("models", help="list the shipped model bundles (and any given path), validated")
    m.add_argument("paths", nargs="*")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)
    r = sub.add_parser("rejam", help="accompany a MIDI melody on a simulated clock, recorded like a live jam")
    r.add_argument("melody", help="a MIDI file: the melody is the track named --track, else the first with notes")
    r.add_argument("-o", "--output", required=True, help="the MIDI file to write (a .json sidecar goes next to it)")
    r.add_argument("--track", help="the melody track's name")
    _add_plan_options(r)
    r.set_defaults(func=_rejam)
    rd = sub.add_parser("render", help="render a MIDI file to WAV with the built-in synth")
    rd.add_argument("midi")
    rd.add_argument("-o", "--output", required=True)
    rd.add_argument("--soundfont")
    rd.set_defaults(func=_render)
    lp = sub.add_parser("list-ports", help="MIDI inputs and outputs of every backend")
    lp.add_argument("--midi-api", help="ALSA, JACK, CoreMIDI or Windows MM (default: all compiled in)")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_list_ports)
    rc = sub.add_parser("recover", help="save sessions a crash left unfinished")
    rc.add_argument("journal", nargs="?", help="one journal file (default: every unfinished one)")
    rc.add_argument("--dir", help="the sessions folder (default: ~/Comper/sessions or $COMPER_SESSIONS)")
    rc.set_defaults(func=_recover)
    dr = sub.add_parser("doctor", help="check MIDI, synth, soundfont, onnxruntime and the shipped models")
    dr.add_argument("--soundfont")
    dr.set_defaults(func=_doctor)
    b = sub.add_parser("bench", help="per-frame planning cost on a simulated clock")
    b.add_argument("--model", default="online-mle-small")
    b.add_argument("--frames", type=int, default=2000)
    b.add_argument("--bpm", type=float, default=120)
    b.add_argument("--lookahead", type=float, default=4)
    b.add_argument("--commit", type=float, default=4)
    b.add_argument("--threads", type=int, default=1)
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "func", None):
        build_parser().print_help()
        return 0
    try:
        return args.func(args)
    except Exception as e:  # noqa: BLE001 - user-fixable errors of every subsystem print one line
        if type(e).__name__ not in USER_ERRORS:
            raise
        print(f"comper: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
