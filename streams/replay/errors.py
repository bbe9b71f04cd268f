"""The one root exception of the replay package: a message a person can act on."""

from __future__ import annotations

__all__ = ["ReplayError"]


class ReplayError(Exception):
    """Replay, export or report cannot go on; the message says why and what to do."""
