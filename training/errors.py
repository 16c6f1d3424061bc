"""Training's own errors, importable without torch (the command line catches them before any stage loads)."""

from __future__ import annotations


class NonFiniteLoss(RuntimeError):
    """A loss went NaN or infinite; the run stopped at its last good checkpoint (exit status 3)."""
