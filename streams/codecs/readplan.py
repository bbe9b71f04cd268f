"""Read plans (one per writer schema, cached by the decoder) and decode limits.

A read plan says how to turn one writer schema's Avro body into the latest reader
schema's shape: the writer's parsed schema, plus either nothing (writer == reader), the
reader's defaults for fields the reader only *adds* to primitive writer fields (v1 -> v2:
read with the writer schema and fill the defaults -- the same result as fastavro's
resolution, tested, at a third of the cost), or the reader schema for fastavro's full
resolution (enums, promotions, removed fields, aliases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gates.events import SourceFormat
from streams.codecs.catalogue import SchemaEntry
from streams.codecs.fastread import FastReader, compile_reader
from streams.codecs.kinds import Mapper

__all__ = ["DecodeLimits", "ReadPlan", "added_defaults"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Configurable bounds; anything outside gives a DecodeError."""

    max_payload_bytes: int = 64 * 1024
    max_future_skew_ms: int = 15 * 60 * 1000  # event time ahead of the Kafka timestamp
    max_past_skew_ms: int = 7 * 24 * 3600 * 1000  # event time behind it (devices buffer offline)
    min_event_time_ms: int = 1_420_070_400_000  # 2015-01-01T00:00Z: older is a reset clock
    max_event_time_ms: int = 4_102_444_800_000  # 2100-01-01T00:00Z


class ReadPlan:
    """How to read one writer schema (cached per id / fingerprint / header)."""

    __slots__ = ("defaults", "entry", "fast", "mapper", "reader", "ref", "source_format", "writer")

    def __init__(
        self,
        entry: SchemaEntry,
        reader: SchemaEntry,
        mapper: Mapper,
        ref: str,
        builder: Callable[..., Any] | None = None,
    ) -> None:
        self.entry = entry
        self.writer = entry.parsed
        self.mapper = mapper
        self.ref = ref
        self.source_format = SourceFormat.AVRO_V1 if entry.version == 1 else SourceFormat.AVRO_V2
        self.defaults: dict[str, Any] | None = None
        self.reader: dict[str, Any] | None = None
        # generated reader straight into the canonical record (streams/codecs/fastread.py);
        # None: read with fastavro and map the dict
        self.fast: FastReader | None = None
        if reader.fingerprint != entry.fingerprint:
            self.defaults = added_defaults(entry, reader)
            if self.defaults is None:
                self.reader = reader.parsed
        if builder is not None and self.reader is None:
            self.fast = compile_reader(entry.parsed, reader.parsed, builder, self.source_format)


def added_defaults(writer: SchemaEntry, reader: SchemaEntry) -> dict[str, Any] | None:
    """Reader defaults to add when the reader only appends defaulted fields, else None."""
    rfields = {f["name"]: f for f in reader.parsed["fields"]}
    if writer.parsed.get("name") != reader.parsed.get("name"):
        return None
    for f in writer.parsed["fields"]:
        r = rfields.get(f["name"])
        t = f["type"]
        if r is None or r["type"] != t:
            return None
        if not (isinstance(t, str) and t in _PRIMITIVES) and not (
            isinstance(t, list) and all(isinstance(b, str) and b in _PRIMITIVES for b in t)
        ):
            return None
    wnames = {f["name"] for f in writer.parsed["fields"]}
    added = {n: f for n, f in rfields.items() if n not in wnames}
    if any("default" not in f for f in added.values()):
        return None
    return {n: f["default"] for n, f in added.items()}
