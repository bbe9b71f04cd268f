"""Rollout cohorts: which stage selectors a device matches, decided from inventory data.

A device is *selected* for stage ``i`` when it matches stage ``i``'s selector and its
deterministic bucket (CRC-32 of ``rollout_id:device_id``, 0..9999) is below
``percent x 100``; its *assigned* stage is the lowest such ``i``.  The *selector
mask* has bit ``i`` set when the device matches stage ``i``'s selector regardless of
percent: devices of the mask still on the previous version are the control
population of stage ``i``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from gates.events import ATTRIBUTE_NAMES, DeviceAttributes, RolloutPlan, TargetKind

__all__ = ["Membership", "RolloutInfo", "attribute_tuple", "bucket"]


def bucket(rollout_id: str, device_id: str) -> int:
    """Deterministic bucket 0..9999 of a device within a rollout (same in every process)."""
    return zlib.crc32(f"{rollout_id}:{device_id}".encode()) % 10_000


def attribute_tuple(attrs: DeviceAttributes) -> tuple[str, ...]:
    """Inventory attributes in ATTRIBUTE_NAMES order."""
    return tuple(getattr(attrs, name) for name in ATTRIBUTE_NAMES)


_DEFAULT_ATTRS = attribute_tuple(DeviceAttributes(device_id=""))


class RolloutInfo:
    """The parts of a rollout plan the engine needs, with selectors pre-indexed."""

    __slots__ = (
        "rollout_id",
        "target",
        "previous",
        "firmware",
        "selectors",
        "percents",
        "plan",
        "n_stages",
        "published_ms",
    )

    def __init__(self, plan: RolloutPlan, published_ms: int | None = None) -> None:
        self.plan = plan
        # when the rollout's first plan was published: no exposure of it starts earlier
        self.published_ms = plan.updated_at_ms if published_ms is None else published_ms
        self.rollout_id = plan.rollout_id
        self.target = plan.target_version
        self.previous = plan.previous_version
        self.firmware = plan.target_kind is TargetKind.FIRMWARE
        self.n_stages = len(plan.stages)
        self.selectors: list[list[tuple[int, frozenset[str]]]] = [
            [
                (ATTRIBUTE_NAMES.index(k), frozenset(v))
                for k, v in sorted(s.selector.items())
                if k in ATTRIBUTE_NAMES
            ]
            for s in plan.stages
        ]
        self.percents = [round(s.percent * 100) for s in plan.stages]

    def same_cohorts(self, other: RolloutInfo) -> bool:
        return (self.target, self.previous, self.firmware, self.selectors, self.percents) == (
            other.target,
            other.previous,
            other.firmware,
            other.selectors,
            other.percents,
        )

    def classify(self, device_id: str, attrs: Sequence[str] | None) -> tuple[int, int]:
        """``(assigned stage or -1, selector mask)`` of one device."""
        values = _DEFAULT_ATTRS if attrs is None else attrs
        mask = 0
        assigned = -1
        b = -1
        for i, sel in enumerate(self.selectors):
            if all(values[j] in allowed for j, allowed in sel):
                mask |= 1 << i
                if assigned < 0:
                    if b < 0:
                        b = bucket(self.rollout_id, device_id)
                    if b < self.percents[i]:
                        assigned = i
        return assigned, mask


class Membership:
    """One device's place in one rollout (shared between devices with the same place)."""

    __slots__ = ("rollout", "assigned", "mask", "treated_stage", "keys", "slice")

    def __init__(self, rollout: RolloutInfo, assigned: int, mask: int, slice_: str = "") -> None:
        self.rollout = rollout
        self.slice = slice_  # the devices' slice (see gates.aggregates.CohortKey)
        self.assigned = assigned
        self.mask = mask
        # stage a device counts under once it runs the target without a command naming one
        self.treated_stage = assigned if assigned >= 0 else (mask & -mask).bit_length() - 1
        self.keys: dict[int, object] = {}  # cohort -> CohortKey, filled by the aggregator
