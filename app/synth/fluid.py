"""The thin layer over pyfluidsynth: lazy import, compiled-in driver names, and FluidSynth's own log messages.

Why not just ``fluidsynth.Synth.start()``: it returns ``FLUID_OK`` whatever happens (the audio driver pointer it
stores may be NULL), and it also opens a MIDI driver and router the app does not want (the app reads MIDI with
rtmidi). So the live synth calls ``new_fluid_audio_driver`` itself and checks the pointer. FluidSynth reports *why*
a driver failed only through its log, so the probe captures the log to put that reason on screen.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import CFUNCTYPE, c_char_p, c_int, c_void_p
from types import ModuleType

FLUID_PANIC, FLUID_ERR, FLUID_WARN = 0, 1, 2

_LOG_FN = CFUNCTYPE(None, c_int, c_char_p, c_void_p)
_OPTION_FN = CFUNCTYPE(None, c_void_p, c_char_p, c_char_p)
_log_lock = threading.Lock()


class SynthUnavailable(RuntimeError):
    """pyfluidsynth or the FluidSynth shared library is missing; the message says which and how to install."""


def load() -> ModuleType:
    """Import pyfluidsynth (which loads libfluidsynth) or raise a one-line ``SynthUnavailable``."""
    try:
        import fluidsynth  # noqa: PLC0415  (lazy: the app runs without it, MIDI out only)
    except ImportError as exc:  # pyfluidsynth raises ImportError for a missing C library too
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SynthUnavailable(
            f"FluidSynth unavailable ({msg}); install pyfluidsynth and the FluidSynth library "
            "(Debian/Ubuntu: apt-get install libfluidsynth3)"
        ) from None
    return fluidsynth


def compiled_drivers(fs: ModuleType, settings: int) -> list[str]:
    """The audio driver names this FluidSynth build knows (an unknown name is *not* refused by setstr)."""
    lib = fs._fl
    if not hasattr(lib, "fluid_settings_foreach_option"):
        return []
    names: list[str] = []
    cb = _OPTION_FN(lambda _data, _name, option: names.append(option.decode()))
    lib.fluid_settings_foreach_option.argtypes = [c_void_p, c_char_p, c_void_p, _OPTION_FN]
    lib.fluid_settings_foreach_option.restype = None
    lib.fluid_settings_foreach_option(settings, b"audio.driver", None, cb)
    return names


@contextmanager
def captured_log(fs: ModuleType) -> Iterator[list[str]]:
    """Collect FluidSynth's panic/error/warning messages (instead of printing them) while the block runs.

    The log function is process-global, so this holds a lock and restores FluidSynth's default printer after.
    """
    lib = fs._fl
    messages: list[str] = []
    if not (hasattr(lib, "fluid_set_log_function") and hasattr(lib, "fluid_default_log_function")):
        yield messages
        return
    cb = _LOG_FN(lambda _level, msg, _data: messages.append((msg or b"").decode(errors="replace").strip()))
    lib.fluid_set_log_function.argtypes = [c_int, c_void_p, c_void_p]
    lib.fluid_set_log_function.restype = c_void_p
    default = ctypes.cast(lib.fluid_default_log_function, c_void_p)
    levels = (FLUID_PANIC, FLUID_ERR, FLUID_WARN)
    with _log_lock:
        for level in levels:
            lib.fluid_set_log_function(level, ctypes.cast(cb, c_void_p), None)
        try:
            yield messages
        finally:
            for level in levels:
                lib.fluid_set_log_function(level, default, None)


def channel_message(fs: ModuleType, synth, channel: int, status: int, data: tuple[int, ...]) -> None:
    """Play a controller (0xB0), pitch bend (0xE0, 14-bit as (lsb, msb)), channel pressure (0xD0) or poly
    pressure (0xA0) on ``synth`` (a pyfluidsynth ``Synth``); pyfluidsynth wraps only the first two, so the
    pressures go to the FluidSynth library itself."""
    if status == 0xB0:
        fs.fluid_synth_cc(synth.synth, channel, data[0], data[1])
    elif status == 0xE0:
        fs.fluid_synth_pitch_bend(synth.synth, channel, data[0] | data[1] << 7)
    elif status in (0xD0, 0xA0):
        name = "fluid_synth_channel_pressure" if status == 0xD0 else "fluid_synth_key_pressure"
        fn = getattr(fs._fl, name, None)
        if fn is None:  # an old FluidSynth
            return
        fn.argtypes = [c_void_p] + [c_int] * (1 + len(data))
        fn.restype = c_int
        fn(synth.synth, channel, *data)
