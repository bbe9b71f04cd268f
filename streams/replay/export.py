"""Export a capture to an Avro object container file, and read it back for a broker-less replay.

Every Kafka record is kept whole (topic, partition, offset, timestamp, key, headers, raw value
bytes) in one wrapper record, so a file replay decodes exactly the bytes the broker held.  The
inventory snapshot of the devices seen rides along as ``INVENTORY`` rows (key: device id, value:
the attributes as JSON).  Range and topic prefix are in the container's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from gates.events import DeviceAttributes
from streams.replay.capture import Capture, Raw, as_tuple
from streams.replay.errors import ReplayError
from streams.replay.inventory import attributes_from_dict, attributes_to_dict
from streams.replay.timerange import TimeRange

__all__ = ["EXPORT_SCHEMA", "read_export", "write_export"]

FORMAT_VERSION = "1"
EXPORT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ExportedRecord",
    "namespace": "dev.fleetgate.replay",
    "doc": "One Kafka record of a fleetgate export (or one inventory row), raw bytes untouched.",
    "fields": [
        {
            "name": "kind",
            "type": {"type": "enum", "name": "ExportKind", "symbols": ["RECORD", "INVENTORY"]},
            "default": "RECORD",
        },
        {"name": "topic", "type": "string", "doc": "full topic name (with prefix); '' for INVENTORY"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp_ms", "type": "long", "doc": "Kafka record timestamp, epoch ms"},
        {"name": "key", "type": ["null", "bytes"], "default": None, "doc": "INVENTORY: device id"},
        {
            "name": "headers",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Header",
                    "fields": [
                        {"name": "key", "type": "string"},
                        {"name": "value", "type": ["null", "bytes"]},
                    ],
                },
            },
            "default": [],
        },
        {"name": "value", "type": ["null", "bytes"], "default": None, "doc": "INVENTORY: attributes as JSON"},
    ],
}
_PARSED = fastavro.parse_schema(EXPORT_SCHEMA)
_META = "fleetgate."


def _rows(capture: Capture, inventory: dict[str, DeviceAttributes]) -> Iterator[dict[str, Any]]:
    groups: list[list[Any]] = [capture.plans, capture.control]
    groups += [msgs for _, msgs in sorted(capture.inputs.items())]
    for msgs in groups:
        for m in msgs:
            value, headers, ts, topic, partition, offset, key = as_tuple(m)
            yield {
                "kind": "RECORD",
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp_ms": ts,
                "key": key,
                "headers": [{"key": k, "value": v} for k, v in headers or ()],
                "value": value,
            }
    for d, attrs in sorted(inventory.items()):
        yield {
            "kind": "INVENTORY",
            "topic": "",
            "partition": -1,
            "offset": -1,
            "timestamp_ms": capture.trange.end_ms,
            "key": d.encode(),
            "headers": [],
            "value": json.dumps(attributes_to_dict(attrs), sort_keys=True).encode(),
        }


def write_export(
    path: Path, capture: Capture, inventory: dict[str, DeviceAttributes], codec: str = "deflate"
) -> int:
    """Write `capture` and the inventory snapshot; returns the number of Kafka records written."""
    meta = {
        f"{_META}format": FORMAT_VERSION,
        f"{_META}topic_prefix": capture.prefix,
        f"{_META}from_ms": str(capture.trange.start_ms),
        f"{_META}to_ms": str(capture.trange.end_ms),
    }
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fo:
        fastavro.writer(
            fo, _PARSED, _rows(capture, inventory), codec=codec, metadata=meta, sync_interval=1 << 20
        )
    tmp.replace(path)
    return len(capture.plans) + len(capture.control) + capture.input_count


def read_export(path: Path, trange: TimeRange | None = None) -> Capture:
    """A capture from an export file; `trange` (optional) narrows the input records by timestamp."""
    try:
        fo = path.open("rb")
    except OSError as exc:
        raise ReplayError(f"{path}: {exc.strerror}") from None
    with fo:
        try:
            reader = fastavro.reader(fo)
        except Exception as exc:  # fastavro raises ValueError/SchemaParseException/... on a non-Avro file
            raise ReplayError(f"{path}: not an Avro object container file ({exc})") from None
        meta = reader.metadata
        if meta.get(f"{_META}format") != FORMAT_VERSION:
            raise ReplayError(f"{path}: not a fleetgate export (format {meta.get(f'{_META}format')!r})")
        prefix = meta[f"{_META}topic_prefix"]
        full = TimeRange(int(meta[f"{_META}from_ms"]), int(meta[f"{_META}to_ms"]))
        if trange is not None and (trange.start_ms < full.start_ms or trange.end_ms > full.end_ms):
            raise ReplayError(f"{path} holds {full}; the requested range {trange} reaches outside it")
        rng = trange or full
        cap = Capture(prefix, rng, inventory={}, source=str(path))
        plans_t, control_t = f"{prefix}rollouts", f"{prefix}rollout-control"
        short = {f"{prefix}{t}": t for t in ("telemetry", "acks", "device-commands")}
        lo, hi = rng.start_ms, rng.end_ms
        inputs = cap.inputs
        inv = cap.inventory
        assert inv is not None
        for r in reader:
            if r["kind"] == "INVENTORY":
                inv[r["key"].decode()] = attributes_from_dict(json.loads(r["value"]))
                continue
            topic, ts = r["topic"], r["timestamp_ms"]
            raw: Raw = (
                r["value"],
                [(h["key"], h["value"]) for h in r["headers"]],
                ts,
                topic,
                r["partition"],
                r["offset"],
                r["key"],
            )
            if topic == plans_t:
                if ts < hi:
                    cap.plans.append(raw)
            elif topic == control_t:
                cap.control.append(raw)
            elif lo <= ts < hi or trange is None:
                k = (short[topic], r["partition"])
                lst = inputs.get(k)
                if lst is None:
                    lst = inputs[k] = []
                lst.append(raw)
    return cap
