"""The built-in synth: FluidSynth with a General MIDI soundfont, live (``BuiltinSynth``) or offline (``render``).

No Qt and no torch here. ``pyfluidsynth`` and the FluidSynth library are imported lazily, so a machine without
them can still import this package, find soundfonts, and run the app with MIDI out only.
"""

from .render import RenderError, RenderInfo, render_midi_to_wav
from .soundfont import SoundfontNotFound, find_soundfont, search_locations
from .synth import BASS, CHORDS, DEFAULT_PROGRAMS, MELODY, BuiltinSynth

__all__ = [
    "BASS", "CHORDS", "DEFAULT_PROGRAMS", "MELODY", "BuiltinSynth", "RenderError", "RenderInfo",
    "SoundfontNotFound", "find_soundfont", "render_midi_to_wav", "search_locations",
]
