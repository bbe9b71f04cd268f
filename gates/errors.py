"""The gate engine's exception hierarchy: one root, tiny subclasses."""

from __future__ import annotations

__all__ = ["GateError", "PolicyError", "SnapshotError"]


class GateError(Exception):
    """Root of every error raised by ``gates``."""


class PolicyError(GateError, ValueError):
    """A gate policy failed validation; the message names the offending key path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class SnapshotError(GateError, ValueError):
    """Snapshot or partial bytes could not be decoded (wrong version or corrupt)."""
