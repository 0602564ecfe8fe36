"""User-facing errors.

A :class:`DtkitError` is a mistake in what the user asked for (a bad id, a bad
flag, a mismatched checkpoint). The CLI prints its message as one line and exits
non-zero without a traceback; bugs still raise ordinary exceptions.
"""

from __future__ import annotations

__all__ = ["DtkitError", "TrainingInterrupted"]


class DtkitError(Exception):
    """A user error: the message names the bad input and the fix."""


class TrainingInterrupted(DtkitError):
    """Training was stopped (Ctrl-C, SIGTERM) after a checkpoint was saved; ``checkpoint`` is its path."""

    def __init__(self, message: str, checkpoint: str) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
