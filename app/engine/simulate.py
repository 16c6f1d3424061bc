"""The engine on a simulated clock: the same planner, frame by frame, as fast as the CPU allows.

Used by ``comper rejam``, the benchmarks and the tests: it keeps exactly the live causal constraint (the planner
hears frame f only after every chord up to f has been promised), so what it produces is what a live jam with the
same melody and seed would produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .planner import Planner, PlanResult


@dataclass
class SimulatedJam:
    chords: list[int] = field(default_factory=list)  # the chord token that sounded at every frame
    plans: list[PlanResult] = field(default_factory=list)


def simulate(planner: Planner, melody: list[tuple[int, bool]]) -> SimulatedJam:
    """``melody``: (top pitch or -1, onset) per frame, as the player's input quantizes."""
    jam = SimulatedJam()
    for pitch, onset in melody:
        jam.chords.append(planner.chord_for(planner.next_frame))  # sounds at the start of the frame
        jam.plans.append(planner.advance(pitch, onset))
        planner.idle()
    return jam
