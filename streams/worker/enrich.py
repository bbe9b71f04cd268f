"""Inventory attributes for the ingest stage.

A partition engine classifies a device into cohorts by its attributes (model, region, ...),
which live in the Redis inventory, not in the events.  Before a device's first event reaches
an engine, the engine is told the device's attributes once, as a :class:`DeviceAttributes`
event; a device looked up while Redis was down is looked up again on its next event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gates.events import DeviceAttributes
from streams.inventory import InventoryCache
from streams.worker.metrics import WorkerMetrics

__all__ = ["Enricher"]


class Enricher:
    def __init__(self, inventory: InventoryCache | None, metrics: WorkerMetrics) -> None:
        self.inventory = inventory
        self.metrics = metrics
        self._known: dict[int, set[str]] = {}  # per partition: devices its engine has been told about
        self._pending: dict[int, set[str]] = {}  # per partition: looked up while Redis was down

    def assign(self, partition: int, devices: Iterable[str]) -> None:
        """A (restored) engine for `partition` that already knows `devices`."""
        self._known[partition] = set(devices)
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
        known = self._known.setdefault(partition, set())
        pending = self._pending.setdefault(partition, set())
        wanted = {
            d
            for ev in events
            if (d := getattr(ev, "device_id", None)) is not None and (d not in known or d in pending)
        }
        if not wanted:
            return events
        found = self.inventory.lookup_many(wanted)
        attrs: list[Any] = []
        for device_id in sorted(wanted):
            value = found.get(device_id)
            if value is None and not self.inventory.redis_available:
                pending.add(device_id)  # Redis down: try again on the device's next event
                self.metrics.inventory_misses.inc()
                continue
            pending.discard(device_id)
            known.add(device_id)
            attrs.append(value or DeviceAttributes(device_id))
        return attrs + events
