"""Slices of a rollout a decision has stopped (decision ``slice``, ``slices.action: slice``).

A gate PAUSE or ROLLBACK naming a slice (inventory attribute -> value) stops only the devices
whose inventory matches every entry: they are left out of every later dispatch of the rollout
(the rest of the stage and later stages), and for a ROLLBACK the ones already commanded or
updated in the rollout are sent rollbacks; the rollout itself stays in its state.  The stops
are part of :class:`streams.executor.machine.RolloutStatus`, so they are persisted in Redis with
the status and published with it on every plan (``fg-executor-status``), from which a rebuild
after Redis lost its state restores them (streams/executor/rebuild.py).

Pure: no Kafka, Redis or clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gates.events import Action, DeviceAttributes

__all__ = ["SliceStop", "has_rollbacks", "is_excluded", "slice_devices", "stops_from_json", "stops_to_json"]


@dataclass(frozen=True, slots=True)
class SliceStop:
    """One stopped slice: its (attribute, value) pairs (sorted), the action, the stage it was
    decided for and the decision that stopped it."""

    values: tuple[tuple[str, str], ...]
    action: Action
    stage: int
    decision_id: str = ""

    @classmethod
    def of(cls, values: Mapping[str, str], action: Action, stage: int, decision_id: str = "") -> SliceStop:
        return cls(tuple(sorted(values.items())), action, stage, decision_id)

    def matches(self, attrs: DeviceAttributes) -> bool:
        # attributes are ATTRIBUTE_NAMES (streams.executor.machine treats a slice naming another
        # as a stop of the whole stage)
        return all(getattr(attrs, k, None) == v for k, v in self.values)

    def covers(self, other: SliceStop) -> bool:
        """Whether this stop already does what ``other`` asks (same slice, action at least as strong)."""
        return self.values == other.values and self.action.rank >= other.action.rank

    def to_json(self) -> dict[str, Any]:
        return {
            "slice": dict(self.values),
            "action": self.action.value,
            "stage": self.stage,
            "decision_id": self.decision_id,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SliceStop:
        return cls.of(
            {str(k): str(v) for k, v in d["slice"].items()},
            Action(d["action"]),
            int(d["stage"]),
            str(d.get("decision_id", "")),
        )


def is_excluded(stops: Iterable[SliceStop], attrs: DeviceAttributes) -> bool:
    return any(s.matches(attrs) for s in stops)


def slice_devices(inventory: Iterable[DeviceAttributes], stop: SliceStop) -> set[str]:
    return {a.device_id for a in inventory if stop.matches(a)}


def has_rollbacks(stops: Iterable[SliceStop]) -> bool:
    """Whether some slice was rolled back (its rollback targets are tracked like a rollout's)."""
    return any(s.action is Action.ROLLBACK for s in stops)


def stops_to_json(stops: Iterable[SliceStop]) -> list[dict[str, Any]]:
    return [s.to_json() for s in stops]


def stops_from_json(raw: Iterable[Mapping[str, Any]] | None) -> tuple[SliceStop, ...]:
    """Absent (a status written before slice stops): none."""
    return tuple(SliceStop.from_json(d) for d in raw or ())
