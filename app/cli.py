"""`comper`: the desktop app (no subcommand), or jam from a terminal, re-jam a MIDI file, list ports and models,
render, benchmark, check the setup.

Errors a musician can fix (a port that does not exist, a broken bundle, a corrupt MIDI file) print one line and
exit with status 2; nothing here needs torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator

from .engine import steering
from .engine.bundle import BundleError, load_bundle, resolve_model, shipped_bundles, shipped_teacher
from .engine.options import (
    BAND_KNOBS,
    JAM_KNOBS,
    OptionError,
    add_arguments,
    add_plan_arguments,
    check_args,
    dest,
    knob,
)
from .errors import ComperError


def _models(args: argparse.Namespace) -> int:
    from .engine.bundle import default_model, models_dir

    try:
        default = default_model()
    except BundleError:
        default = None
    rows = []
    for card_path in shipped_bundles() + [resolve_model(p) for p in args.paths]:
        try:
            b = load_bundle(card_path)
            c = b.card
            rows.append({"name": b.name, "path": str(card_path), "ok": True, "role": b.role,
                         "default": b.name == default and card_path.parent == models_dir(),
                         "parameters": c.parameters, "stage": c.stage, "description": c.description,
                         "test_harmony": c.test_harmony, "test_vendi": c.test_vendi,
                         "change_cost_offset": c.change_cost_offset,
                         "int8": c.int8 is not None and c.int8.file is not None})
        except BundleError as e:
            rows.append({"name": card_path.stem, "path": str(card_path), "ok": False, "error": str(e)})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no model bundles found")
    for r in rows if not args.json else []:
        if r["ok"]:  # every figure a card may lack (older or hand-written cards) is left out, not a crash
            size = f", {r['parameters'] / 1e6:.1f}M parameters" if r.get("parameters") else ""
            state = f"{r['role']}{size}" + (f", {r['stage']}" if r.get("stage") else "")
        else:
            state = f"REFUSED: {r['error']}"
        if r.get("test_harmony") is not None:
            state += f", test harmony {r['test_harmony']:.3f}"
        if r.get("test_vendi") is not None:
            state += f", Vendi {r['test_vendi']:.1f}"
        if r.get("change_cost_offset"):
            state += f", steering change cost {r['change_cost_offset']:+g}"
        print(f"{r['name'] + (' *' if r.get('default') else ''):<24} {state}  ({r['path']})")
    return 0 if all(r["ok"] for r in rows) else 2


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


def _report_recoveries(results: list, listing: bool = False) -> None:
    """One line per journal (a skipped one on stderr), then the problems inside it (stderr warnings); ``listing``
    (``recover --list``): all of it on stdout, as the report asked for."""
    for r in results:
        ok = listing or r.error is None
        print(r.headline() if ok else f"comper: {r.headline()}", file=sys.stdout if ok else sys.stderr)
        for line in r.problem_lines():
            print(f"  {line}" if listing else f"comper: warning: {line}", file=sys.stdout if listing else sys.stderr)


def _recover(args: argparse.Namespace) -> int:
    """Save the sessions a crash left unfinished, each on its own; --list: say what would be done, write nothing."""
    from .recording import recover_all, recover_one
    from .session import sessions_dir

    folder = args.dir or sessions_dir()
    write = not args.list
    results = [recover_one(args.journal, write=write)] if args.journal else recover_all(folder, write=write)
    if not results:
        print(f"no unfinished session in {folder}")
    _report_recoveries(results, listing=args.list)
    return 2 if any(r.error for r in results) else 0


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
            _runner(load_bundle(card))  # loaded as a jam loads it: one forward pass must give finite logits
        except BundleError as e:
            line(False, f"model {card.stem}", str(e))
    return 1 if problems else 0


def _runner(bundle):
    """The runner a bundle's role asks for (``OnnxPolicy`` or ``OnnxTeacher``), loaded and checked."""
    from .engine.policy import OnnxPolicy
    from .engine.teacher import OnnxTeacher

    return (OnnxTeacher if bundle.role == "offline_teacher" else OnnxPolicy)(bundle)


def _bench(args: argparse.Namespace) -> int:
    """Per-frame planning cost on a simulated clock at the given settings."""
    import numpy as np

    from .engine.options import plan_from_args
    from .engine.planner import Planner
    from .engine.policy import OnnxPolicy

    settings = plan_from_args(args)  # a bad value is refused before the model loads
    policy = OnnxPolicy(load_bundle(resolve_model(args.model)), threads=args.threads)
    planner = Planner(policy, settings)
    rng = np.random.default_rng(0)
    pitch, times, calls, idle = -1, [], [], []
    for f in range(args.frames):
        if f % 2 == 0:  # a busy melody: a new note (or rest) every 8th note
            pitch = int(rng.choice([-1, 60, 62, 64, 65, 67, 69, 71, 72]))
        r = planner.advance(pitch, f % 2 == 0 and pitch >= 0)
        times.append(r.seconds * 1000)
        calls.append(r.model_calls)
        t0 = time.perf_counter()
        planner.idle()
        idle.append((time.perf_counter() - t0) * 1000)
    frame_ms = 60_000 / (args.bpm * 4)
    med, p99 = statistics.median(times), float(np.percentile(times, 99))
    print(f"model {policy.bundle.name}, {args.frames} frames, lookahead {settings.lookahead_beats:g} beats, commit "
          f"{settings.commit_beats:g}, "
          f"steering {args.steer}{' (with overrides)' if settings.steer != steering.PRESETS[args.steer] else ''}, "
          f"{args.threads} thread(s)")
    print(f"planning per frame: median {med:.2f} ms, p99 {p99:.2f} ms, max {max(times):.2f} ms; "
          f"{statistics.mean(calls):.2f} model calls per frame")
    print(f"after the plan is out (growing the next window's cache): median {statistics.median(idle):.2f} ms, "
          f"p99 {float(np.percentile(idle, 99)):.2f} ms")
    print(f"a frame at {args.bpm:g} bpm is {frame_ms:.1f} ms: p99 uses {100 * p99 / frame_ms:.1f}% of it")
    return 0


def _add_limit_options(p: argparse.ArgumentParser, frames: bool = False) -> None:
    add_arguments(p, [knob("max_minutes")] + ([knob("max_frames")] if frames else []))


def _parse_meter(text: str) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in text.split("/"))
        if num < 1 or den not in (1, 2, 4, 8, 16):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--meter {text!r}: expected beats/unit like 4/4 or 3/4") from None
    return num, den


def _open_outputs(args: argparse.Namespace) -> tuple[list, list, list]:
    """(sinks, ports to watch, things to close) for every --out."""
    from .engine.performer import MidiSink, SynthSink
    from .midi import MidiOutput
    from .synth import BuiltinSynth

    sinks, ports, closers = [], [], []
    for out in args.out or ["synth"]:
        if out == "synth":
            synth = BuiltinSynth(args.soundfont)
            driver = synth.start()
            print(f"synth: {driver}" if driver != "silent" else f"synth: SILENT ({synth.reason})")
            sinks.append(SynthSink(synth))
            closers.append(synth)
        else:
            virtual = out == "virtual"
            port = MidiOutput("Comper out" if virtual else out, api=args.midi_api, virtual=virtual)
            print(f"chords out: {port.port_name or port.name}" + (" (virtual port)" if virtual else ""))
            sinks.append(MidiSink(port, thru=args.thru))
            ports.append(port)
            closers.append(port)
    return sinks, ports, closers


def _load_teacher(args: argparse.Namespace):
    """The intro-fill teacher: --teacher NAME|PATH, 'none', or by default the first shipped teacher bundle."""
    if args.teacher == "none" or args.listen <= 0:
        return None
    from .engine.teacher import OnnxTeacher

    if args.teacher:
        return OnnxTeacher(load_bundle(resolve_model(args.teacher)))
    bundle = shipped_teacher()
    return OnnxTeacher(bundle) if bundle else None


@contextlib.contextmanager
def _jam_signals() -> Iterator[dict]:
    """While a jam runs, Ctrl-C, SIGTERM and SIGHUP end it alike (a KeyboardInterrupt in the main thread), so what
    sounds gets its note-off and the take is saved; a SIGTERM used to kill it with the chord still sounding at the
    port. Once the jam is ending (``state["ending"]``) further signals are ignored: stopping and saving take well
    under a second, and interrupted they would leave notes on. Off the main thread (where Python takes no
    signals) it changes nothing."""
    state = {"ending": False}

    def handler(signum: int, frame: object) -> None:
        if not state["ending"]:
            state["ending"] = True
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    old = {sig: signal.signal(sig, handler) for sig in (getattr(signal, n) for n in names if hasattr(signal, n))}
    try:
        yield state
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _wait_for_end(session, seconds: float | None) -> None:
    """Until ``seconds`` have passed (None: for ever), a signal (KeyboardInterrupt) or the jam fails by itself."""
    deadline = time.monotonic() + seconds if seconds else None
    while not session.failed.is_set():
        left = 0.1 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return
        session.failed.wait(min(0.1, left))


def _jam(args: argparse.Namespace) -> int:
    """Jam live: keyboard in, chords out, recorded; Ctrl-C, SIGTERM (or --seconds) ends it and saves the session.
    A planner fault ends it too: the take so far is saved, then the fault is the one error line (status 2)."""
    from .engine.live import PlannerError
    from .engine.options import JamSettings
    from .recording import OutputError, sidecar_path
    from .recording.output import MIDI, check_target

    record = check_target(args.record, MIDI) if args.record else None  # refused before the jam, not after it
    settings = JamSettings.from_args(args)  # a bad value is refused before a port opens or a model loads
    _check_clock_args(args)
    if args.link:  # a missing binding is one line before a port opens
        from .engine.link import load_binding

        try:
            load_binding()
        except ImportError as e:
            raise OptionError(f"--link: {e}") from None
    with _jam_signals() as signals:
        jam = _play_jam(args, record, settings, signals)
        if jam is None:
            return 1
        try:
            saved = jam.save(record)
        except OutputError as e:  # the journal stays unfinished: nothing played is lost
            raise OutputError(f"{e}; the take is kept in {jam.recorder.path} (`comper recover` saves it)") from None
    summary = jam.summary
    print(f"saved {saved} (+ {sidecar_path(saved).name}): {summary['frames']} frames, {summary['chords']} "
          f"chords, {summary['deadline_misses']} deadline misses; planning median {summary['plan_ms_median']:.2f} ms, "
          f"p99 {summary['plan_ms_p99']:.2f} ms; chord onsets p99 {summary['onset_error_ms_p99']:.2f} ms late")
    if jam.session.fault is not None:
        raise PlannerError(f"{jam.session.fault}; the take so far is saved in {saved}")
    return 0


def _play_jam(args: argparse.Namespace, record, settings, signals: dict):
    """Open the ports, load the models, recover an earlier crashed jam, and jam until it ends; returns the
    stopped ``RunningJam``, or None when the jam never started. Whatever ends it (the time, a signal, a fault, an
    error on the way), it is stopped, so every note it started gets its note-off."""
    from .engine.policy import OnnxPolicy
    from .midi import MidiInput
    from .session import JamRequest, open_jam, recover_unfinished, sessions_dir

    virtual_in = args.in_port == "virtual"
    jam = link_clock = None

    def on_note(ev) -> None:
        if jam is not None:
            jam.session.on_note(ev)

    # The keyboard first: a port that is not there (or no MIDI at all) fails in one line, before the model loads
    # and before the synth starts (its audio drivers print their own noise).
    keyboard = MidiInput("Comper in" if virtual_in else args.in_port, on_note, api=args.midi_api, virtual=virtual_in)
    closers: list = []
    try:
        clock_in, clock_out = _open_clock(args, settings)  # a missing clock port fails here too, in one line
    except BaseException:
        keyboard.close()
        raise
    try:
        policy = OnnxPolicy(load_bundle(resolve_model(args.model)), threads=args.threads)
        teacher = _load_teacher(args)
        sinks, ports, closers = _open_outputs(args)
        journal_dir = record.parent if record else sessions_dir()
        _report_recoveries(recover_unfinished(journal_dir))  # a jam that crashed last time is saved before a new one
        print(f"keyboard: {keyboard.port_name or keyboard.name}" + (" (virtual port)" if virtual_in else ""))
        clocks = [p for p in (clock_in, clock_out) if p is not None]
        if args.link:  # joined just before the jam: frame 0 is the session's bar line after the count-in
            from .engine.link import LinkClock

            link_clock = LinkClock.for_jam(settings)
            print(f"clock: Ableton Link, {link_clock.bpm_at():g} bpm, {link_clock.link.numPeers()} peers", flush=True)
        jam = open_jam(JamRequest(policy, settings, journal_dir, sinks, teacher, ports=[*ports, keyboard, *clocks],
                                  clock=clock_in.follower if clock_in else link_clock,
                                  clock_out=[clock_out] if clock_out else ()))
        plan = settings.plan
        print(f"model {policy.bundle.name}{', intro by ' + teacher.bundle.name if teacher else ''}; "
              f"{settings.bpm:g} bpm {settings.meter[0]}/{settings.meter[1]}, count-in {settings.count_in_beats:g} "
              f"beats, chords after {plan.listen_beats:g} beats; Ctrl-C ends the jam", flush=True)
        _wait_for_end(jam.session, args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        signals["ending"] = True
        keyboard.close()
        if jam is not None:
            jam.stop()
        for port in (clock_in, clock_out, link_clock):
            if port is not None:
                port.close()
        for c in closers:
            c.close()
    return jam


def _check_clock_args(args: argparse.Namespace) -> None:
    """``OptionError`` for an empty --clock-in / --clock-out, or both (Comper either follows or leads)."""
    for flag, value in (("--clock-in", args.clock_in), ("--clock-out", args.clock_out)):
        if value is not None and not value.strip():
            raise OptionError(f"{flag} {value!r}: name a MIDI port (`comper list-ports`) or 'virtual'")
    if args.clock_in is not None and args.clock_out is not None:
        raise OptionError("--clock-out with --clock-in: Comper sends its clock only when it leads")
    if getattr(args, "link", False) and (args.clock_in is not None or args.clock_out is not None):
        raise OptionError("--link with --clock-in / --clock-out: the jam runs on one clock, the Link session's")


def _open_clock(args: argparse.Namespace, settings) -> tuple:
    """(the clock input the jam follows, the port it sends its clock to): each None unless asked for (--clock-in,
    --clock-out: a port name or 'virtual'). A bad value or a missing port is one ``ComperError`` line."""
    from .engine.follow import ClockFollower
    from .midi import MidiOutput
    from .midi.clock import VIRTUAL, ClockInput

    _check_clock_args(args)
    clock_in = clock_out = None
    if args.clock_in is not None:
        virtual = args.clock_in == VIRTUAL
        clock_in = ClockInput("Comper clock in" if virtual else args.clock_in, ClockFollower.for_jam(settings),
                              api=args.midi_api, virtual=virtual)
        print(f"clock: following {clock_in.port_name or clock_in.name}" + (" (virtual port)" if virtual else "")
              + "; the jam starts at its Start", flush=True)
    if args.clock_out is not None:
        virtual = args.clock_out == VIRTUAL
        try:
            clock_out = MidiOutput("Comper clock out" if virtual else args.clock_out, api=args.midi_api,
                                   virtual=virtual)
        except BaseException:
            if clock_in is not None:
                clock_in.close()
            raise
        print(f"clock out: {clock_out.port_name or clock_out.name}" + (" (virtual port)" if virtual else ""))
    return clock_in, clock_out


def _input_limits(args: argparse.Namespace):
    """The ``InputLimits`` of --max-minutes (and --max-frames) for the input file."""
    from .engine.midifile import InputLimits

    return InputLimits(max_minutes=args.max_minutes, max_frames=getattr(args, "max_frames", None))


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"comper: warning: {line}", file=sys.stderr)


def _rejam(args: argparse.Namespace) -> int:
    from .engine.midifile import read_melody
    from .engine.options import plan_from_args
    from .engine.rejam import rejam
    from .recording import sidecar_path
    from .recording.output import MIDI, check_target

    settings = plan_from_args(args)
    check_target(args.output, MIDI, inputs=[args.melody])
    melody = read_melody(args.melody, args.track, _input_limits(args), args.bpm)  # refused before a model loads
    _warn(melody.warnings)
    band = {k.name: getattr(args, dest(k)) for k in BAND_KNOBS}
    r = rejam(args.melody, args.model, args.output, settings, bpm=args.bpm, track=args.track,
              teacher=_load_teacher(args), melody=melody, band=band)
    print(f"wrote {r.out} (+ {sidecar_path(r.out).name}): {r.frames} frames, {r.chords} chords; planning "
          f"median {r.plan_ms_median:.2f} ms, p99 {r.plan_ms_p99:.2f} ms per frame; {r.seconds:.1f} s in all")
    return 0


def _render(args: argparse.Namespace) -> int:
    from .synth import render_midi_to_wav

    band = {k.name: getattr(args, dest(k)) for k in BAND_KNOBS if getattr(args, dest(k)) is not None}
    if band:  # the session's chords played again by another band, then rendered
        return _render_rearranged(args, band)
    info = render_midi_to_wav(args.midi, args.output, soundfont=args.soundfont, limits=_input_limits(args))
    _warn(info.warnings)
    print(f"wrote {info.wav_path}: {info.seconds:.1f} s of audio, {info.notes} notes, soundfont {info.soundfont}")
    return 0


def _render_rearranged(args: argparse.Namespace, band: dict) -> int:
    import tempfile
    from pathlib import Path

    from .engine.midifile import load_midi
    from .engine.rearrange import rearrange
    from .recording import existing_sidecar
    from .recording.output import WAV, check_target
    from .synth import RenderError, render_midi_to_wav

    check_target(args.output, WAV, inputs=[args.midi])
    mid, warnings = load_midi(args.midi, _input_limits(args), RenderError)
    side, seed, was = existing_sidecar(args.midi), None, {}
    try:  # the take's seed (the same file re-arranged sounds the same twice) and band (what is not said stays)
        data = json.loads(side.read_text()) if side else {}
        seed, was = data.get("seed"), (data.get("settings") or {}).get("band") or {}
    except (OSError, ValueError, AttributeError):
        pass
    kept = {k.name: was.get(k.name) for k in BAND_KNOBS if k.choices and k.problem(was.get(k.name)) is None}
    band = kept | band
    out = rearrange(args.midi, mid, band, seed if isinstance(seed, int) else 0)
    with tempfile.TemporaryDirectory() as tmp:
        played = Path(tmp) / "rearranged.mid"
        out.save(played)
        info = render_midi_to_wav(played, args.output, soundfont=args.soundfont)
    _warn(warnings + info.warnings)
    said = ", ".join(f"{k} {v}" for k, v in band.items())
    print(f"wrote {info.wav_path}: {info.seconds:.1f} s of audio, {info.notes} notes ({said}), soundfont {info.soundfont}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """A session (or a rejam output) as a lead sheet: MusicXML and/or a chord chart (PNG or PDF)."""
    from .engine.key import NAMES
    from .leadsheet import export

    done = export(args.session, args.musicxml, args.chart, _input_limits(args))
    _warn(done.warnings)
    s = done.sheet
    for path in done.written:
        print(f"wrote {path}: {s.n_bars} bars, {s.meter[0]}/{s.meter[1]} at {s.bpm:g} bpm, key {NAMES[s.key.tonic]} {s.key.mode} "
              f"({'the session' + chr(39) + 's' if s.key_from == 'session' else 'from the melody'})")
    return 0


def _reharmonize(args: argparse.Namespace) -> int:
    """The offline teacher's second opinion on a take, saved beside it as a session of its own."""
    from .engine.teacher import OnnxTeacher
    from .leadsheet import export
    from .leadsheet.reharmonize import second_opinion

    if not 0.0 <= args.temperature <= 3.0:  # also refuses nan
        raise OptionError(f"--temperature {args.temperature}: must be between 0 (the likeliest chords) and 3")
    bundle = load_bundle(resolve_model(args.teacher)) if args.teacher else shipped_teacher()
    if bundle is None:
        raise BundleError("no offline-teacher bundle shipped in models/; give one with --teacher")
    done = second_opinion(args.take, OnnxTeacher(bundle), args.output, args.seed, args.temperature,
                          steering.PRESETS[args.steer])
    print(f"the take's chords:    {done.live.describe()}")
    print(f"the teacher's chords: {done.teacher.describe()}")
    print(f"wrote {done.out} (+ its sidecar): the take's melody with the chords of {bundle.name}")
    if args.chart:
        for path in export(done.out, None, args.chart).written:
            print(f"wrote {path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Same take, other model: the take's melody re-jammed by another model (or steering), saved beside it."""
    from .compare import compare, version_title

    done = compare(args.take, args.model, args.steer, args.output, args.seed)
    rows = [(f"the take ({version_title(done.take)})", done.take_lane),
            (version_title(done.out), done.other_lane)]
    width = max(len(name) for name, _ in rows) + 1
    for name, figures in rows:
        print(f"{name + ':':<{width}} {figures.describe()}")
    print(f"wrote {done.out} (+ its sidecar): the take's melody as played, comped by {done.model} (seed {done.seed})")
    return 0


def _prefs(args: argparse.Namespace) -> int:
    """The blind A/B choices in preferences.jsonl: one line each, or (--summary) win rates per pair."""
    from pathlib import Path

    from .prefs import label, prefs_path, summary

    path = prefs_path(args.dir) if args.file is None else Path(args.file)
    if not path.is_file():
        print(f"no blind A/B choices yet ({path} does not exist)")
        return 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise ComperError(f"{path}: cannot read: {e.strerror or e}") from None
    tallies, errors = summary(lines, str(path))
    for e in errors:
        print(f"comper: error: {e}", file=sys.stderr)
    if args.summary:
        for t in tallies:
            print(t.describe())
        if not tallies:
            print("no choices to count")
        return 0
    for text in lines:
        try:
            d = json.loads(text)
            a, b = label(d["a"]), label(d["b"])
            print(f"{d.get('time', '?')}  {d['take']['file']}: A {a}, B {b}; picked {d['picked'].upper()} "
                  f"({a if d['picked'] == 'a' else b})")
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # said above
    return 0


def _add_plan_options(p: argparse.ArgumentParser, live: bool) -> None:
    """The model, the tempo (a re-jam: the file's unless given; a jam: ``JAM_KNOBS``, count-in too), the planning
    and steering flags, the teacher."""
    p.add_argument("--model", help="a shipped model name or a bundle path (default: gapt, else the best shipped)")
    if live:
        add_arguments(p, JAM_KNOBS)
    else:
        add_arguments(p, [knob("bpm")], {"bpm": None}, {"bpm": "default: the file's, else 120"})
    add_plan_arguments(p)
    add_arguments(p.add_argument_group("the band (how the chords are played)"), BAND_KNOBS)
    p.add_argument("--teacher", help="offline-teacher bundle that fills the intro's context chords (default: the "
                                     "shipped teacher, if any; 'none': off)")


def build_parser() -> argparse.ArgumentParser:
    from .gui.options import add_app_options  # no Qt: the app's options only

    p = argparse.ArgumentParser(prog="comper", description="Comper: with no command, open the desktop app; "
                                                           "the commands below work from a terminal.")
    add_app_options(p)
    sub = p.add_subparsers(dest="command")
    m = sub.add_parser("models", help="list the shipped model bundles (and any given path), validated")
    m.add_argument("paths", nargs="*")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)
    r = sub.add_parser("rejam", help="accompany a MIDI melody on a simulated clock, recorded like a live jam")
    r.add_argument("melody", help="a MIDI file: the melody is the track named --track, else the first with notes")
    r.add_argument("-o", "--output", required=True,
                   help="the MIDI file to write (.mid; its sidecar NAME.mid.session.json goes next to it)")
    r.add_argument("--track", help="the melody track's name")
    _add_limit_options(r, frames=True)
    _add_plan_options(r, live=False)
    r.set_defaults(func=_rejam)
    ex = sub.add_parser("export", help="a saved session or rejam output as a lead sheet: MusicXML, chord chart")
    ex.add_argument("session", help="the session's MIDI file (its sidecar NAME.mid.session.json beside it)")
    ex.add_argument("--musicxml", help="the MusicXML file to write (.musicxml or .xml): melody, chord symbols, "
                                       "meter, tempo, key (needs music21: pip install 'comper[export]')")
    ex.add_argument("--chart", help="the chord chart to write, .png or .pdf: chord symbols per bar, four a line")
    _add_limit_options(ex)
    ex.set_defaults(func=_export)
    rh = sub.add_parser("reharmonize", help="the offline teacher's second opinion on a take (it hears the whole "
                                            "melody): saved beside it as TAKE.teacher.mid, both harmonies printed")
    rh.add_argument("take", help="a saved session's (or rejam output's) MIDI file")
    rh.add_argument("-o", "--output", help="the MIDI file to write (default: TAKE.teacher.mid beside the take)")
    rh.add_argument("--teacher", help="an offline-teacher bundle (default: the shipped one)")
    rh.add_argument("--seed", type=int, default=0, help="the teacher's sampling seed (default 0)")
    rh.add_argument("--temperature", type=float, default=1.0,
                    help="the teacher's sampling temperature (default 1, as evaluated; 0: the likeliest chords; at most 3)")
    rh.add_argument("--steer", default=steering.DEFAULT_PRESET, choices=list(steering.PRESETS),
                    help=f"the engine's steering on the teacher's chords, the key fixed to the melody's (default "
                         f"{steering.DEFAULT_PRESET}; 'off': the raw teacher)")
    rh.add_argument("--chart", help="also draw the teacher's chord chart, .png or .pdf")
    rh.set_defaults(func=_reharmonize)
    cp = sub.add_parser("compare", help="same take, other model: the take's melody re-jammed by another model or "
                                        "steering preset, saved beside it as TAKE.vs-MODEL.mid; both harmonies printed")
    cp.add_argument("take", help="a saved session's MIDI file (its Melody track is replayed as played)")
    cp.add_argument("--model", help="a shipped model name or a bundle path (default: gapt, else the best shipped)")
    cp.add_argument("--steer", choices=list(steering.PRESETS),
                    help="the steering preset (default: the take's own steering)")
    cp.add_argument("--seed", type=int, help="the sampling seed (default: the take's)")
    cp.add_argument("-o", "--output", help="the MIDI file to write (default: TAKE.vs-MODEL[-STEER].mid beside the take)")
    cp.set_defaults(func=_compare)
    pf = sub.add_parser("prefs", help="the blind A/B choices (preferences.jsonl in the sessions folder)")
    pf.add_argument("--summary", action="store_true", help="win rates per pair of versions (model and steering)")
    pf.add_argument("--dir", help="the sessions folder (default: ~/Comper/sessions or $COMPER_SESSIONS)")
    pf.add_argument("--file", help="a preferences file (default: preferences.jsonl in the sessions folder)")
    pf.set_defaults(func=_prefs)
    j = sub.add_parser("jam", help="jam live: a MIDI keyboard in, chords out (synth and/or a MIDI port), recorded")
    j.add_argument("--in", dest="in_port", required=True,
                   help="the keyboard's MIDI input port (a name from `comper list-ports`), or 'virtual'")
    j.add_argument("--out", action="append", help="'synth' (the built-in synth; default), a MIDI output port name, "
                                                  "or 'virtual'; repeat for several")
    j.add_argument("--midi-api", help="ALSA, JACK, CoreMIDI or Windows MM (default: the first that works)")
    j.add_argument("--meter", type=_parse_meter, default=(4, 4), help="time signature, e.g. 3/4")
    j.add_argument("--record", help="where to save the session's MIDI file, .mid (default: the sessions folder)")
    add_arguments(j, [knob("seconds"), knob("threads")], unset={"seconds": "default: until Ctrl-C"})
    j.add_argument("--thru", action="store_true", help="also echo the keyboard to MIDI output ports")
    j.add_argument("--clock-in", help="follow this port's MIDI clock (24 PPQN, Start/Stop/Continue, song position): "
                                      "a name from `comper list-ports`, or 'virtual'; the jam starts at its Start")
    j.add_argument("--clock-out", help="send the jam's MIDI clock (24 PPQN, Start/Stop) to this port, or 'virtual', "
                                       "so a DAW or drum machine follows Comper")
    j.add_argument("--link", action="store_true", help="run on an Ableton Link session's beat grid and tempo (peers "
                                                       "on the network follow tempo changes); pip install 'comper[link]'")
    j.add_argument("--soundfont")
    _add_plan_options(j, live=True)
    j.set_defaults(func=_jam)
    rd = sub.add_parser("render", help="render a MIDI file to WAV with the built-in synth")
    rd.add_argument("midi")
    rd.add_argument("-o", "--output", required=True, help="the WAV file to write (.wav)")
    rd.add_argument("--soundfont")
    _add_limit_options(rd)
    add_arguments(rd.add_argument_group("the band: given, a session's chords are played again this way, then rendered"),
                  BAND_KNOBS, {k.name: None for k in BAND_KNOBS},
                  {k.name: "default: as the file was played" for k in BAND_KNOBS})
    rd.set_defaults(func=_render)
    lp = sub.add_parser("list-ports", help="MIDI inputs and outputs of every backend")
    lp.add_argument("--midi-api", help="ALSA, JACK, CoreMIDI or Windows MM (default: all compiled in)")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_list_ports)
    rc = sub.add_parser("recover", help="save sessions a crash left unfinished")
    rc.add_argument("journal", nargs="?", help="one journal file (default: every unfinished one)")
    rc.add_argument("--dir", help="the sessions folder (default: ~/Comper/sessions or $COMPER_SESSIONS)")
    rc.add_argument("--list", action="store_true", help="say which journals would be saved (notes and chords in "
                                                        "each, the file written) or skipped and why; write nothing")
    rc.set_defaults(func=_recover)
    dr = sub.add_parser("doctor", help="check MIDI, synth, soundfont, onnxruntime and the shipped models")
    dr.add_argument("--soundfont")
    dr.set_defaults(func=_doctor)
    b = sub.add_parser("bench", help="per-frame planning cost on a simulated clock")
    b.add_argument("--model", help="a shipped model name or a bundle path (default: as for jam)")
    add_arguments(b, [knob("frames"), knob("bpm"), knob("threads")], {"bpm": 120.0})
    add_plan_arguments(b, listen=0)
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """The entry point; a reader of stdout that goes away (``comper models --json | head -1``) ends it quietly."""
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:  # (none under pythonw)
                sys.stdout.flush()  # here, not at exit, where the BrokenPipeError could not be caught
    except BrokenPipeError:
        return _stdout_gone()


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        check_args(args)  # every number against its range (engine/options.py), before anything opens or loads
    except OptionError as e:
        return _user_error(e)
    if not getattr(args, "func", None):
        from .gui import run  # lazily: only the app needs Qt

        return run(argv)
    _terminate_as_interrupt()
    try:
        return args.func(args)
    except ComperError as e:  # user-fixable errors of every subsystem print one line
        return _user_error(e)
    except KeyboardInterrupt:
        return 130


def _user_error(e: Exception) -> int:
    print(f"comper: error: {e}", file=sys.stderr)
    return 2


def _terminate_as_interrupt() -> None:
    """SIGTERM (a ``kill``, a session manager) ends a command as Ctrl-C does, so the output writer's clean-up runs
    and no temporary file is left beside the target; a jam installs its own handlers over this one."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _stdout_gone() -> int:
    """The reader of stdout went away (``comper models --json | head -1``): exit quietly as Unix tools do, with
    128 + SIGPIPE. Python's own flush at exit would fail again, so stdout now points at the null device."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor behind sys.stdout (tests capture it)
        pass
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
