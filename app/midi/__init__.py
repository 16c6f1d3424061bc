"""MIDI in and out for the live app: ports over python-rtmidi, note events in, tracked notes out (no Qt, no torch)."""

from app.midi.input import ControlEvent, InputStats, MidiInput, NoteEvent, NoteFilter
from app.midi.output import MidiOutput, OutputStats
from app.midi.parser import StreamParser
from app.midi.ports import (
    InputPort,
    OutputPort,
    PortError,
    PortList,
    available_apis,
    list_ports,
    open_input,
    open_output,
)

__all__ = [
    "ControlEvent", "InputPort", "InputStats", "MidiInput", "MidiOutput", "NoteEvent", "NoteFilter", "OutputPort", "OutputStats",
    "PortError", "PortList", "StreamParser", "available_apis", "list_ports", "open_input", "open_output",
]
