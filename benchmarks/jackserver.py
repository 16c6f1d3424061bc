"""A private JACK dummy server for the benchmarks (no pytest, no app imports): real MIDI on a machine with no
sound card and no ALSA sequencer. rtmidi clients started while it runs (this process and its children) find it
through ``JACK_DEFAULT_SERVER``.

    with jack_server(period=32) as name:
        ...  # rtmidi.MidiOut(rtmidi.API_UNIX_JACK, ...) etc.

The dummy driver wakes the JACK graph every ``period / rate`` seconds and rtmidi moves MIDI only then (an event
sent between two cycles goes out at the next), so the period bounds how late any MIDI event can arrive: 256 frames
at 48 kHz is 5.3 ms, 32 frames 0.67 ms.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator


class JackError(RuntimeError):
    pass


def _running(name: str) -> bool:
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    try:
        done = subprocess.run(["jack_lsp", "-s", name], env=env, capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and b"not running" not in done.stderr + done.stdout


@contextlib.contextmanager
def jack_server(name: str | None = None, period: int = 256, rate: int = 48000, *, realtime: bool = False,
                sync: bool = False, log_path: str | os.PathLike | None = None,
                timeout: float = 20.0) -> Iterator[str]:
    """Start ``jackd -d dummy`` named ``name`` (default: unique to this process), set ``JACK_DEFAULT_SERVER`` (and
    ``JACK_NO_START_SERVER``) for the duration, and stop it afterwards; yields the server name.

    ``realtime``: run JACK's threads (the server's and every client's process thread) at real-time priority, as
    a musician's JACK does (needs the permission: root, or an rtprio limit); default off, as in the tests.
    ``sync``: the server waits for every client in each cycle (``jackd -S``) instead of moving on without a late
    one: a client starved of CPU then delays MIDI instead of missing a cycle's events.
    ``log_path``: keep jackd's output there (its xruns); by default it goes to a temporary file, deleted after."""
    jackd = shutil.which("jackd")
    if jackd is None or shutil.which("jack_lsp") is None:
        raise JackError("jackd / jack_lsp are not installed (Debian: apt-get install jackd2)")
    name = name or f"comper-bench-{os.getpid()}"
    old = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    log = (open(log_path, "w+") if log_path is not None
           else tempfile.NamedTemporaryFile("w+", prefix="jackd-", suffix=".log", delete=False))
    cmd = [jackd, "-n", name] + ([] if realtime else ["--no-realtime"]) + (["-S"] if sync else [])
    proc = subprocess.Popen(cmd + ["-d", "dummy", "-r", str(rate), "-p", str(period)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not _running(name):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise JackError(f"jackd did not come up; its log: {log.read()[-800:]}")
            time.sleep(0.1)
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if log_path is None:
            os.unlink(log.name)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def receiver(conn, client: str) -> None:
    """A synth, in a child process of the benchmarks: a virtual JACK MIDI input whose callback stamps each message
    on arrival. Sends back the list."""
    import rtmidi

    got: list[tuple[float, list[int]]] = []
    rt = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client, 8192)
    rt.ignore_types(True, True, True)
    rt.set_callback(lambda msg, _: got.append((time.monotonic(), msg[0])))
    rt.open_virtual_port("midi")
    conn.send("ready")
    conn.recv()  # stop
    rt.cancel_callback()
    rt.close_port()
    rt.delete()
    conn.send(got)


def start_receiver(ctx, client: str = "bench-synth"):
    """Start ``receiver`` in a child process (``ctx``: a multiprocessing context) and wait until its port is up;
    returns (the pipe to it, the process). Send "stop" on the pipe, then read the list of arrivals."""
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=receiver, args=(child, client), daemon=True)
    proc.start()
    if not conn.poll(30) or conn.recv() != "ready":
        raise SystemExit("the receiving client did not start")
    return conn, proc
