"""A private JACK server and two stand-in JACK clients (a keyboard, a synth) for the real-rtmidi tests.

This kernel has no ALSA sequencer; a `jackd -d dummy` server gives rtmidi a real MIDI graph. A missing jackd
fails the JACK tests (run .ci/setup, which installs jackd2) instead of skipping them, so CI notices a missing
install step.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time

import pytest
import rtmidi

from app.midi import list_ports

_names = itertools.count()


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


# --- JACK ------------------------------------------------------------------------------------------------------


def run_jack(tmp_path_factory):
    """A private JACK dummy server for this session; rtmidi clients find it through JACK_DEFAULT_SERVER."""
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.fail("jackd is not installed: run .ci/setup (it installs the Debian package jackd2)", pytrace=False)
    server = f"comper-test-{os.getpid()}"
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server
    log_path = tmp_path_factory.mktemp("jack") / "jackd.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([jackd, "-n", server, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while (found := list_ports("JACK")).error is not None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jackd did not come up ({found.error}); its log: {log_path.read_text()[-800:]}",
                            pytrace=False)
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old


class Keyboard:
    """Another JACK client with a virtual output port: the player's keyboard. It can vanish and come back."""

    def __init__(self, client: str, port: str = "keys") -> None:
        self.client, self.port = client, port
        self.name = f"{client}:{port}"
        self.rt = None
        self.plug()

    def plug(self) -> None:
        self.rt = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, self.client)
        self.rt.open_virtual_port(self.port)

    def unplug(self) -> None:
        self.rt.close_port()
        self.rt.delete()  # python-rtmidi objects are in a reference cycle: `del` alone keeps the client alive
        self.rt = None

    def send(self, *messages) -> None:
        for m in messages:
            self.rt.send_message(list(m))


class Synth:
    """Another JACK client with a virtual input port that records what it receives."""

    def __init__(self, client: str, port: str = "midi") -> None:
        self.client, self.port = client, port
        self.name = f"{client}:{port}"
        self.rt = None
        self.received: list[tuple[int, ...]] = []
        self.plug()

    def plug(self) -> None:
        self.rt = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, self.client, 4096)
        self.rt.ignore_types(False, False, False)
        self.rt.open_virtual_port(self.port)
        self.received = []

    def unplug(self) -> None:
        self.rt.close_port()
        self.rt.delete()
        self.rt = None

    def poll(self) -> list[tuple[int, ...]]:
        while self.rt is not None and (item := self.rt.get_message()) is not None:
            self.received.append(tuple(item[0]))
        return self.received

    def sounding(self) -> dict:
        """(channel, pitch) -> note-ons received beyond their note-offs: what still sounds at this synth."""
        count: dict = {}
        for m in self.poll():
            if len(m) == 3 and m[0] & 0xF0 in (0x80, 0x90):
                on = m[0] & 0xF0 == 0x90 and m[2] > 0
                count[(m[0] & 0x0F, m[1])] = count.get((m[0] & 0x0F, m[1]), 0) + (1 if on else -1)
        return {k: v for k, v in count.items() if v > 0}

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[int, ...]]:
        wait_until(lambda: len(self.poll()) >= n, timeout)
        time.sleep(0.05)  # and nothing more arrives
        return self.poll()


