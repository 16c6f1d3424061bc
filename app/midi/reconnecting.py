"""What MIDI input and output share: a port held by name that may vanish (unplugged) and come back.

``check()`` (called by the engine about once a second) notices a vanished port and reopens it by name when it
reappears; subclasses say how to open the port, what to do when it is lost, and what to do on reconnection.
"""

from __future__ import annotations

import threading
from typing import Literal

from app.midi.ports import PortError, list_ports, match_port

State = Literal["connected", "disconnected", "closed"]


class ReconnectingPort:
    direction = "inputs"  # which list of list_ports() the port's name is looked up in

    def _start(self, name: str, api: str | None, virtual: bool, client_name: str, wait_for_port: bool) -> None:
        """Opens the port at once; a missing port raises PortError unless ``wait_for_port`` (then check() opens
        it when it appears)."""
        self.name, self._api, self._virtual, self._client_name = name, api, virtual, client_name
        self._port = None
        self._closed = False
        self._lock = threading.RLock()
        try:
            self._open()
        except PortError:
            if not wait_for_port or virtual:
                raise

    @property
    def state(self) -> State:
        if self._closed:
            return "closed"
        return "connected" if self._port is not None else "disconnected"

    @property
    def port_name(self) -> str | None:
        """The name of the port we are connected to (it can differ from ``name`` by ALSA's numbers)."""
        port = self._port
        return port.name if port else None

    def check(self) -> State:
        """Notice a vanished port, or reopen a returned one; returns the state."""
        with self._lock:
            if self._closed:
                return "closed"
            if self._port is not None:
                if not self._port.present():
                    self._lose_port()
            elif match_port(self.name, getattr(list_ports(self._api), self.direction)) is not None:
                try:
                    self._open()
                except PortError:
                    return self.state
                self._reconnected()
            return self.state

    def _open(self) -> None:
        raise NotImplementedError

    def _lose_port(self) -> None:
        raise NotImplementedError

    def _reconnected(self) -> None:
        pass
