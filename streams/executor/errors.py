"""One root exception for the executor package, with small subclasses."""

from __future__ import annotations

__all__ = ["ExecutorError", "PlanError", "SimulatedCrash", "UnknownRollout"]


class ExecutorError(Exception):
    """Root of every error the executor package raises on purpose."""


class PlanError(ExecutorError, ValueError):
    """A rollout plan file failed validation; the message names the file and the key path."""


class UnknownRollout(ExecutorError, LookupError):
    """The executor holds no state for this rollout id."""


class SimulatedCrash(ExecutorError):
    """Raised at an injected fault point (tests and fault drills only)."""
