"""A small recorded rollout built in memory (no broker), in the shape an export holds.

tests/pipeline/fleet.py's scenario (one device model fails the update: a ROLLBACK), encoded
with our codecs in every payload generation, keyed by device id over 12 partitions.
"""

from __future__ import annotations

import zlib
from typing import Any

from streams.codecs import Encoder, Framing
from streams.replay.capture import Capture
from streams.replay.timerange import TimeRange
from tests.pipeline import fleet

__all__ = ["PREFIX", "T0", "small_capture"]

PREFIX = "t."
T0 = 1_790_000_000_000
PARTS = 12


def small_capture(devices: int = 60, seconds: int = 60) -> Capture:
    fl = fleet.Fleet.make(devices)
    enc = Encoder()
    inputs: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for topic, rec, ts in fleet.events(fl, T0, bad_model="cam-c1", seconds=seconds):
        key = rec.device_id.encode()  # type: ignore[attr-defined]
        value, headers = fleet.encode_mixed(enc, rec, zlib.crc32(key + str(ts).encode()) % 3)
        part = zlib.crc32(key) % PARTS
        lst = inputs.setdefault((topic, part), [])
        lst.append((value, headers, ts, PREFIX + topic, part, len(lst), key))
    cap = Capture(PREFIX, TimeRange(T0 - 10_000, T0 + seconds * 1000 + 20_000), source="memory")
    cap.inputs = dict(inputs)
    plan = fleet.plan(T0 - 1000)
    value, headers = enc.encode(plan, Framing.SINGLE_OBJECT)
    cap.plans.append(
        (value, headers, plan.updated_at_ms, PREFIX + "rollouts", 0, 0, plan.rollout_id.encode())
    )
    cap.inventory = {d.device_id: d for d in fl.devices}
    return cap
