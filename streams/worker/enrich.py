"""Inventory attributes for the ingest stage.

A partition engine classifies a device into cohorts by its attributes (model, region, ...),
which live in the inventory (the inventory topic, cached in Redis), not in the events.  Before
a device's first event reaches an engine, the engine is told the device's attributes once, as
a :class:`DeviceAttributes` event: the attributes in effect at that event's time, so a replay
of the same range (which asks the inventory as of its start) sees the same cohorts.  A device
that could not be looked up (Redis and the topic unavailable) is looked up again on its next event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gates.events import DeviceAttributes
from streams.inventory import InventoryCache
from streams.inventory_topic import as_of
from streams.worker.metrics import WorkerMetrics

__all__ = ["Enricher"]


class Enricher:
    def __init__(self, inventory: InventoryCache | None, metrics: WorkerMetrics) -> None:
        self.inventory = inventory
        self.metrics = metrics
        # Per partition: the devices its engine holds -- the engine's own dict, not a copy (a
        # copy cost about 75 bytes a device at 1,000,000 devices, bench/scale.py).  A device enters
        # it with its attributes, or with its first event when it could not be looked up (`_pending`).
        self._known: dict[int, Mapping[str, Any]] = {}
        self._pending: dict[int, set[str]] = {}  # per partition: looked up while Redis was down

    def assign(self, partition: int, devices: Mapping[str, Any]) -> None:
        """The (restored) engine for `partition` holds `devices` (its live dict of device states)."""
        self._known[partition] = devices
        self._pending.pop(partition, None)

    def revoke(self, partition: int) -> None:
        self._known.pop(partition, None)
        self._pending.pop(partition, None)

    def clear(self) -> None:
        self._known.clear()
        self._pending.clear()

    def enrich(self, partition: int, events: list[Any]) -> list[Any]:
        """`events`, preceded by DeviceAttributes for the devices the partition's engine lacks."""
        if self.inventory is None:
            return events
        known = self._known[partition]  # set by assign
        pending = self._pending.setdefault(partition, set())
        # The batch's distinct devices first: in the common batch every one is known already.
        ids = {getattr(ev, "device_id", None) for ev in events}
        ids.discard(None)
        wanted = {d for d in ids if d not in known}
        if pending:
            wanted |= ids & pending
        if not wanted:
            return events
        first_t: dict[str, int] = {}  # each wanted device's first event time in this batch
        for ev in events:
            d = getattr(ev, "device_id", None)
            if d is not None and d in wanted and d not in first_t:
                first_t[d] = _event_time(ev)
        found, unavailable = self.inventory.lookup_many(first_t)
        attrs: list[Any] = []
        for device_id in sorted(first_t):
            if device_id in unavailable:
                pending.add(device_id)  # try again on the device's next event
                self.metrics.inventory_misses.inc()
                continue
            pending.discard(device_id)  # the engine holds it once it has folded the attributes
            history = found.get(device_id)
            attrs.append(as_of(history, first_t[device_id]) if history else DeviceAttributes(device_id))
        return attrs + events


def _event_time(ev: Any) -> int:
    t = getattr(ev, "event_time_ms", None)
    if t is None:
        t = getattr(ev, "issued_at_ms", 0)  # a device command
    return int(t or 0)
