"""MIDI files from the field reports (issue 17), built byte by byte or with mido, shared by the tests that use them."""

from __future__ import annotations

import mido


def vlq(n: int) -> bytes:
    """A MIDI variable-length number (more than the 4 bytes the format allows, if ``n`` needs them: mido reads it)."""
    out = [n & 0x7F]
    while n := n >> 7:
        out.insert(0, (n & 0x7F) | 0x80)
    return bytes(out)


def one_note_then_a_note_off_far_away(path, ticks=2**28):
    """The 44-byte probe: a note-on, then its note-off 2^28 ticks later (it once made `render` write 544 MB of WAV)."""
    track = b"\x00\xff\x03\x02ab" + b"\x00\x90\x3c\x40" + vlq(ticks) + b"\x80\x3c\x00" + b"\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 1, 0xE0]) + b"MTrk"
                     + len(track).to_bytes(4, "big") + track)
    return path


def type2_file(path):
    """Two patterns, each on its own timeline: 4 beats of C D E F at 120 bpm, then G A at 60 bpm."""
    mid = mido.MidiFile(type=2)
    for name, pitches, tempo in (("verse", [60, 62, 64, 65], None), ("chorus", [67, 69], 1_000_000)):
        t = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
        if tempo:
            t.append(mido.MetaMessage("set_tempo", tempo=tempo))
        for p in pitches:
            t += [mido.Message("note_on", note=p, velocity=80), mido.Message("note_off", note=p, time=480)]
        mid.tracks.append(t)
    mid.save(path)
    return path
