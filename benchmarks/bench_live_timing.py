"""Onset error of Comper's chords as another MIDI client hears them: a real jam over real MIDI on a JACK server.

    python benchmarks/bench_live_timing.py [--model online-mle] [--seconds 30] [--bpm 120] [--period 32]
                                           [--style bossa --bass walking --drums bossa] [--jack-realtime]
                                           [--normal-priority]

What runs: a private ``jackd -d dummy`` (benchmarks/jackserver.py); in this process a real ``JamSession`` with a
virtual ``MidiInput`` ("bench-in") and a ``MidiSink(MidiOutput(...))`` connected to a receiving client, recording
to a temporary journal like a real jam; in two child processes (so neither competes for this process's GIL, as a
keyboard and a synth would not) a *player* that plays a melody (default ``assets/melodies/ode_to_joy.mid``, at the
jam's tempo, in time with Comper's grid) into Comper's input, and a *receiver* whose rtmidi callback (no polling)
stamps every message with ``time.monotonic()`` as it arrives (the monotonic clock is system-wide).

What is measured, for every chord, bass and drum note-on that arrives: arrival time minus the time the engine
promised for it, the grid time of its frame plus the swing and humanize offset its style gives it (read off the
take's recorder as the note is scheduled). Split into *emission* (the moment the engine called the port, minus
that promised time) and *delivery* (arrival minus that moment: rtmidi and JACK); note-ons sent but never received
are counted as lost.

With a band setting other than the pad (``--style``, ``--bass``, ``--drums``: the same flags as ``comper jam``) the
same melody is first jammed with the pad, root bass and no drums, in the same JACK server, and the two are printed
side by side with the ratio of their p99: the issue's "the busiest style keeps the pad's timing".

How to read it:
* JACK moves MIDI once per period, so delivery alone is up to one period late: with the tests' 256-frame period
  (5.3 ms) no engine can meet a 2 ms target; the default here, 32 frames at 48 kHz (0.67 ms), is what a musician
  would run live.
* ``--jack-realtime`` runs JACK as a musician's JACK runs (real-time threads; needs the permission). Without it,
  on a machine whose cores are busy, JACK's client threads miss cycles ("late clients" in its log) and JACK's
  asynchronous mode then drops that cycle's events: lost notes and a long delivery tail that are the test
  server's, not Comper's. ``--jack-sync`` (jackd -S) makes a late client delay events instead of dropping them.
* ``--normal-priority``: the scheduler thread without the real-time priority ``JamSettings.realtime`` asks for
  (the before/after of that setting); on a loaded machine its wake-ups are then late by up to several ms.
* The default temperature is 1.5 so that the small model changes chords often enough to measure (at 1.0 with no
  teacher it may stay silent for minutes).

Target: p99 under 2 ms at the receiver.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from jackserver import jack_server, start_receiver  # noqa: E402
from machine import describe  # noqa: E402

from app.engine.options import BAND_KNOBS, JamSettings, add_arguments, add_plan_arguments, knob, parse_args  # noqa: E402

TARGET_P99_MS = 2.0
IN_PORT = "bench-in"


# --- the other MIDI clients (child processes; the receiver is jackserver.receiver) -----------------------------


def player(conn, port_suffix: str, events: list[tuple[float, list[int]]]) -> None:
    """A keyboard: waits for the start signal, then sends each message at its (absolute monotonic) time."""
    import rtmidi

    rt = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "bench-player")
    names = rt.get_ports()
    rt.open_port(next(i for i, n in enumerate(names) if n.endswith(port_suffix)))
    conn.send("ready")
    start = conn.recv()
    for when, msg in events:
        t = start + when
        while (left := t - time.monotonic()) > 0:
            time.sleep(left if left < 0.002 else left - 0.001)
        rt.send_message(msg)
    time.sleep(0.05)
    rt.close_port()
    rt.delete()
    conn.send("done")


def melody_events(path: Path, bpm: float, seconds: float) -> list[tuple[float, list[int]]]:
    """The file's notes (every track, note on/off only) re-timed to ``bpm``, looped to fill ``seconds``."""
    import mido

    mid = mido.MidiFile(path)
    beat_s = 60.0 / bpm
    notes: list[tuple[float, list[int]]] = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type in ("note_on", "note_off"):
                notes.append((tick / mid.ticks_per_beat * beat_s, msg.bytes()))
    notes.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))  # offs before ons at the same time
    if not notes:
        raise SystemExit(f"{path}: no notes")
    loop = (int(notes[-1][0] / (4 * beat_s)) + 1) * 4 * beat_s  # whole bars
    out, k = [], 0
    while True:
        for t, msg in notes:
            if t + k * loop >= seconds:
                return out
            out.append((t + k * loop, msg))
        k += 1


def stats(xs: list[float]) -> str:
    if not xs:
        return "no data"
    return (f"median {statistics.median(xs):6.2f}  p99 {float(np.percentile(xs, 99)):6.2f}  "
            f"max {max(xs):6.2f} ms")


class TimedSink:
    """Wraps the real MIDI sink: notes the moment each note-on is handed to the port (after, so it costs nothing),
    with the time the engine promised for it (``promised``, filled from the recorder as the note is scheduled)."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.sent: list[tuple[float, int, int, float | None]] = []  # (time, channel, pitch, promised)
        self.promised: dict[tuple[str, int], float] = {}

    def note_on(self, part, pitch, velocity):
        from app.engine.performer import PARTS

        t = time.monotonic()
        self.sink.note_on(part, pitch, velocity)
        self.sent.append((t, PARTS[part], pitch, self.promised.get((part, pitch))))

    def __getattr__(self, name):
        return getattr(self.sink, name)


def watch_promises(recorder, sink: TimedSink) -> None:
    """Each note the performer records is stamped with its promised clock time (grid + swing + humanize) before
    any sink plays it: keep that time for the sink's note-on of the same part and pitch."""
    note = recorder.note

    def recorded(frame, t, part, pitch, velocity, *rest, **kw):
        sink.promised[(part, pitch)] = t
        return note(frame, t, part, pitch, velocity, *rest, **kw)

    recorder.note = recorded


def jam_once(args, settings, policy, events, ctx, tmp: Path) -> dict:
    """One jam over real MIDI in the running JACK server; returns the measured figures."""
    from app.engine.performer import MidiSink
    from app.midi import MidiInput, MidiOutput
    from app.session import JamRequest, open_jam

    rx_conn, rx = start_receiver(ctx)
    out = MidiOutput("bench-synth:midi", api="JACK")
    sink = TimedSink(MidiSink(out))
    jam = None
    keyboard = MidiInput(IN_PORT, lambda ev: jam is not None and jam.session.on_note(ev), api="JACK", virtual=True)
    pl_conn, pl_child = ctx.Pipe()
    pl = ctx.Process(target=player, args=(pl_child, f":{IN_PORT}", events), daemon=True)
    pl.start()
    if not pl_conn.poll(30) or pl_conn.recv() != "ready":
        raise SystemExit(f"the player did not find Comper's input (a port ending in ':{IN_PORT}')")
    jam = open_jam(JamRequest(policy, settings, str(tmp), [sink], ports=[out, keyboard], mode="bench"))
    watch_promises(jam.recorder, sink)
    clock = jam.clock
    pl_conn.send(clock.start)
    end = clock.start + args.seconds
    label = f"{settings.style}/{settings.bass}/{settings.drums}"
    try:
        from tqdm import tqdm  # a benchmark may use it; the app does not

        with tqdm(total=round(end - time.monotonic()), unit="s", desc=f"jamming {label}", leave=False) as bar:
            while not pl_conn.poll(1.0):
                bar.update(min(bar.total, round(bar.total - (end - time.monotonic()))) - bar.n)
    except ImportError:
        pass
    pl_conn.recv()
    pl.join()
    time.sleep(0.2)
    keyboard.close()
    summary = jam.stop()
    out.close()
    time.sleep(0.1)
    rx_conn.send("stop")
    got = rx_conn.recv()
    rx.join()
    jam.discard()  # the journal was the real jam's load; the take is not kept

    fs = clock.frame_seconds
    band_channels = (1, 2, 9)
    arrivals = [(t, m[0] & 0x0F, m[1]) for t, m in got
                if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0 and m[0] & 0x0F in band_channels]
    sent = sink.sent
    pairs, j = [], 0  # (sent, arrived), in order: each arrival is the latest send of its note before it
    for a in arrivals:
        k, match = j, None
        while k < len(sent) and sent[k][0] <= a[0]:
            if sent[k][1:3] == a[1:]:
                match = k
            k += 1
        if match is not None:
            pairs.append((sent[match], a))
            j = match + 1

    def promised(s) -> float:  # a note the recorder did not see (none should): its nearest frame
        return s[3] if s[3] is not None else clock.time_of(round((s[0] - clock.start) / fs))

    at_receiver = [(a[0] - promised(s)) * 1000 for s, a in pairs]
    emission = [(s[0] - promised(s)) * 1000 for s in sent]
    delivery = [(a[0] - s[0]) * 1000 for s, a in pairs]
    offsets = [(promised(s) - clock.time_of(round((promised(s) - clock.start) / fs))) * 1000 for s in sent]
    groups: dict[float, float] = {}  # promised time -> the last note-on's arrival: when the whole group had arrived
    for s, a in pairs:
        key = round(promised(s), 4)
        groups[key] = max(groups.get(key, a[0]), a[0])
    per_group = [(t - key) * 1000 for key, t in groups.items()]
    return {"label": label, "summary": summary, "sent": len(sent), "received": len(arrivals),
            "lost": len(sent) - len(pairs), "at_receiver": at_receiver, "emission": emission, "delivery": delivery,
            "offsets": offsets, "per_group": per_group,
            "channels": {c: sum(1 for s in sent if s[1] == c) for c in band_channels}}


def p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a shipped model name or a bundle path (default: the default model)")
    add_arguments(ap, [knob("seconds"), knob("bpm")], {"seconds": 30.0, "bpm": 120.0})  # the player's length
    ap.add_argument("--melody", type=Path, default=REPO / "assets" / "melodies" / "ode_to_joy.mid")
    add_plan_arguments(ap, listen=4)
    add_arguments(ap, BAND_KNOBS)  # how the band plays: the flags of comper jam
    # the raw policy at 1.5 changes chords often enough to measure their onsets (steering would hold them longer)
    ap.set_defaults(temperature=1.5, steer="off")
    add_arguments(ap, [knob("threads")])
    ap.add_argument("--period", type=int, default=32, help="JACK period in frames (the tests use 256)")
    ap.add_argument("--rate", type=int, default=48000, help="JACK sample rate")
    ap.add_argument("--jack-realtime", action="store_true",
                    help="JACK's threads at real-time priority, as a musician's JACK runs (needs the permission)")
    ap.add_argument("--normal-priority", action="store_true",
                    help="do not ask for real-time priority for Comper's scheduler thread (JamSettings.realtime)")
    ap.add_argument("--jack-sync", action="store_true", help="jackd -S: a late client delays MIDI, never drops it")
    ap.add_argument("--no-baseline", action="store_true",
                    help="with a band setting other than the pad, do not jam with the pad first for comparison")
    args = parse_args(ap, argv)  # every number checked against its range (app/engine/options.py)
    settings = JamSettings.from_args(args, realtime=not args.normal_priority)
    pad = replace(settings, style=JamSettings.style, bass=JamSettings.bass, drums=JamSettings.drums)
    runs = [settings] if settings == pad or args.no_baseline else [pad, settings]

    from app.engine.bundle import load_bundle, resolve_model
    from app.engine.policy import OnnxPolicy

    bundle = load_bundle(resolve_model(args.model))
    policy = OnnxPolicy(bundle, threads=args.threads)
    plan = settings.plan
    events = melody_events(args.melody, args.bpm, args.seconds)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, jack_server(period=args.period, rate=args.rate,
                                                           realtime=args.jack_realtime, sync=args.jack_sync,
                                                           log_path=Path(tmp) / "jackd.log"):
        results = []
        for n, run in enumerate(runs):
            (Path(tmp) / str(n)).mkdir()
            results.append(jam_once(args, run, policy, events, ctx, Path(tmp) / str(n)))
        jack_log = (Path(tmp) / "jackd.log").read_text(errors="replace")

    xruns = jack_log.count("XRun")
    late: dict[str, int] = {}  # JACK client -> cycles it was still busy when the next began (async: events lost)
    for m in re.finditer(r"client = (.+?) was not finished", jack_log):
        late[m.group(1)] = late.get(m.group(1), 0) + 1
    print(f"machine: {describe()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"JACK dummy server: period {args.period} frames at {args.rate} Hz "
          f"({1000 * args.period / args.rate:.2f} ms){', real-time' if args.jack_realtime else ''}"
          f"{', sync' if args.jack_sync else ''}; its log: {xruns} xruns, late clients "
          f"{', '.join(f'{k} x{v}' for k, v in late.items()) or 'none'}")
    print(f"model {bundle.name}, {args.bpm:g} bpm, {args.seconds:g} s of {args.melody.name}, lookahead "
          f"{plan.lookahead_beats:g} beats, commit {plan.commit_beats:g}, listen {plan.listen_beats:g}")
    for r in results:
        summary = r["summary"]
        print(f"\n== band {r['label']} (style/bass/drums): {summary['frames']} frames, {summary['chords']} chords "
              f"struck, {summary['deadline_misses']} deadline misses; scheduler at "
              f"{'real-time' if summary.get('realtime_scheduler') else 'normal'} priority")
        ch = r["channels"]
        print(f"note-ons: {r['sent']} sent (chords {ch[1]}, bass {ch[2]}, drums {ch[9]}), {r['received']} received, "
              f"{r['lost']} lost on the way")
        print(f"promised offset from the 16th grid (swing + humanize): {stats(r['offsets'])}")
        print(f"planning per frame:                   median {summary['plan_ms_median']:6.2f}  "
              f"p99 {summary['plan_ms_p99']:6.2f} ms")
        print(f"onset error at the receiver, per note: {stats(r['at_receiver'])}  (n={len(r['at_receiver'])})")
        print(f"  emission (port called - promised):   {stats(r['emission'])}")
        print(f"  delivery (arrival - port called):    {stats(r['delivery'])}")
        print(f"per onset (its last note arrived):     {stats(r['per_group'])}  (n={len(r['per_group'])})")
        print(f"engine's own count (chord done - grid): median {summary['onset_error_ms_median']:6.2f}  "
              f"p99 {summary['onset_error_ms_p99']:6.2f} ms")
    if len(results) == 2:
        a, b = (p99(r["at_receiver"]) for r in results)
        print(f"\np99 at the receiver: {results[1]['label']} {b:.2f} ms vs {results[0]['label']} {a:.2f} ms "
              f"(ratio {b / a:.2f}), with {results[1]['sent'] / max(1, results[0]['sent']):.1f}x the note-ons")
    worst = max(p99(r["at_receiver"]) for r in results)
    ok = all(r["at_receiver"] for r in results) and worst < TARGET_P99_MS
    print(f"target p99 < {TARGET_P99_MS:g} ms at the receiver: {'MET' if ok else 'MISSED'} (worst p99 {worst:.2f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
