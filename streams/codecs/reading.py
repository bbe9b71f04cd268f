"""One message's bytes to a canonical record or a failure tuple: framing detection and the readers.

Detection order for each message (after the size check):

1. ``fg-format`` header, when present, forces the framing;
2. first byte ``0x00`` -> Confluent wire format (id -> schema via the resolver);
3. ``0xC3 0x01`` -> Avro single-object (fingerprint -> schema via ``schemas/``);
4. ``{`` or whitespace -> JSON (shape from ``fg-schema``/``fg-schema-version`` headers,
   else the stream's default JSON shape, e.g. legacy telemetry);
5. anything else with ``fg-schema`` + ``fg-schema-version`` headers -> bare Avro;
6. otherwise ``unknown_format``.

Avro bodies are read with ``fastavro.schemaless_reader`` and the writer's read plan
(:mod:`streams.codecs.planlookup`), JSON bodies with the shape's fast builder or the generic
mapping; records outside the stream kind's event-time bounds are failures.  A failure is a tuple
``(reason, detail, format, schema_ref, firmware)``, made into a
:class:`~streams.codecs.errors.DecodeError` by the caller, which knows the message's context.

Separate from :mod:`streams.codecs.decoder`, which decodes batches and builds dead letters: this
module owns what happens to one message's bytes.  Nothing here raises on bad input and nothing
reads a clock.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader
from fastavro.read import SchemaResolutionError

from gates.events import SourceFormat
from streams.codecs.catalogue import SchemaCatalogue
from streams.codecs.errors import ErrorReason
from streams.codecs.jsonform import JsonShapeError, from_plain_json, loads_object
from streams.codecs.kinds import Mapper, StreamKind
from streams.codecs.planlookup import PlanLookup
from streams.codecs.readplan import DecodeLimits
from streams.codecs.resolver import SchemaResolver

__all__ = ["MessageReader"]

_JSON_START = frozenset(b" \t\r\n")


class MessageReader(PlanLookup):
    """Reads one message of one stream kind within `limits` (base of the Decoder)."""

    def __init__(
        self, kind: StreamKind, catalogue: SchemaCatalogue, resolver: SchemaResolver, limits: DecodeLimits
    ) -> None:
        super().__init__(kind, catalogue, resolver)
        self.limits = limits
        self._max = self.limits.max_payload_bytes
        self._check_time = kind.check_time
        self._min_et = self.limits.min_event_time_ms
        self._max_et = self.limits.max_event_time_ms
        self._future = self.limits.max_future_skew_ms
        self._past = self.limits.max_past_skew_ms

    def _decode(self, value: bytes | None, headers: Any, ingest: int) -> Any:
        """Record, or a failure tuple ``(reason, detail, format, schema_ref, firmware)``."""
        if not value:
            return (ErrorReason.EMPTY_PAYLOAD, "null or empty value", None, None, None)
        n = len(value)
        if n > self._max:
            return (ErrorReason.OVERSIZED, f"{n} bytes > {self._max}", None, None, None)
        forced = None
        hinted: Any = None
        if headers:
            forced, hinted = self._header_info(headers)
        b0 = value[0]
        if b0 == 0 and (forced is None or forced == "confluent"):
            if n < 5:
                return (
                    ErrorReason.TRUNCATED_FRAME,
                    "Confluent header needs 5 bytes",
                    "confluent",
                    None,
                    None,
                )
            sid = int.from_bytes(value[1:5], "big")
            plan = self._by_id.get(sid) or self._plan_for_id(sid)
            return self._read(value, 5, plan, ingest, "confluent")
        if b0 == 0xC3 and n > 1 and value[1] == 1 and (forced is None or forced == "single-object"):
            if n < 10:
                return (ErrorReason.TRUNCATED_FRAME, "single-object header needs 10 bytes", "single-object",
                        None, None)  # fmt: skip
            fp = value[2:10]
            plan = self._by_fp.get(fp) or self._plan_for_fp(fp)
            return self._read(value, 10, plan, ingest, "single-object")
        if forced == "json" or (
            forced is None and (b0 == 0x7B or (b0 in _JSON_START and _json_after_ws(value)))
        ):
            return self._json(value, hinted, ingest)
        if hinted is not None and forced in (None, "avro"):
            if hinted.__class__ is tuple:
                return (hinted[0], hinted[1], "avro", None, None)
            plan = self._by_entry.get(id(hinted))
            if plan is None:
                plan = self._by_entry[id(hinted)] = self._plan(hinted, f"name:{hinted.ref}")
            return self._read(value, 0, plan, ingest, "avro")
        return (ErrorReason.UNKNOWN_FORMAT, f"first byte 0x{b0:02x}, no schema headers", None, None, None)

    def _read(self, value: bytes, start: int, plan: Any, ingest: int, fmt: str) -> Any:
        if plan.__class__ is tuple:
            return (plan[0], plan[1], fmt, plan[2], None)
        fast = plan.fast
        if fast is not None and value.__class__ is bytes:
            rec = fast(value, start, ingest)
            if rec is not None:
                if not self._check_time:
                    return rec
                et = rec.event_time_ms
                if not (
                    et < self._min_et
                    or et > self._max_et
                    or (ingest >= 0 and (et - ingest > self._future or ingest - et > self._past))
                ):
                    return rec
            # declined or out of range: the fastavro path gives the record or the exact error
        fo = BytesIO(value)
        if start:
            fo.seek(start)
        try:
            d: Any = schemaless_reader(fo, plan.writer, plan.reader)
        except EOFError as exc:
            return (
                ErrorReason.TRUNCATED_AVRO,
                str(exc)[:200] or "unexpected end of body",
                fmt,
                plan.ref,
                None,
            )
        except UnicodeDecodeError as exc:
            return (ErrorReason.INVALID_UTF8, str(exc)[:200], fmt, plan.ref, None)
        except SchemaResolutionError as exc:
            return (ErrorReason.SCHEMA_RESOLUTION, str(exc)[:200], fmt, plan.ref, None)
        except Exception as exc:  # fastavro raises IndexError/ValueError/... on corrupt data
            return (ErrorReason.CORRUPT_AVRO, f"{type(exc).__name__}: {str(exc)[:200]}", fmt, plan.ref, None)
        if fo.tell() != len(value):
            extra = len(value) - fo.tell()
            return (
                ErrorReason.TRAILING_BYTES,
                f"{extra} bytes after the record",
                fmt,
                plan.ref,
                _firmware(d),
            )
        defaults = plan.defaults
        if defaults is not None:
            d = {**defaults, **d}
        try:
            rec = plan.mapper(d, plan.source_format, ingest)
        except JsonShapeError as exc:
            return (exc.reason, exc.detail, fmt, plan.ref, _firmware(d))
        except (KeyError, TypeError, ValueError) as exc:
            return (
                ErrorReason.INVALID_VALUE,
                f"{type(exc).__name__}: {exc}"[:200],
                fmt,
                plan.ref,
                _firmware(d),
            )
        if self._check_time:  # same bounds as _finish, inlined on the hot path
            et = rec.event_time_ms
            if (
                et < self._min_et
                or et > self._max_et
                or (ingest >= 0 and (et - ingest > self._future or ingest - et > self._past))
            ):
                detail = f"event time {et} ms vs ingest {ingest} ms"
                return (ErrorReason.TIMESTAMP_OUT_OF_RANGE, detail, fmt, plan.ref, _firmware(d))
        return rec

    def _json(self, value: bytes, hinted: Any, ingest: int) -> Any:
        if hinted is None:
            name = self.kind.json_default
            if name is None:
                return (ErrorReason.UNKNOWN_SCHEMA, "JSON here needs fg-schema headers", "json", None, None)
            entry = self.catalogue.get(name)
        elif hinted.__class__ is tuple:
            return (hinted[0], hinted[1], "json", None, None)
        else:
            entry = self.catalogue.find(hinted.full_name) or hinted  # JSON is read in the latest shape
        ref = f"name:{entry.ref}"
        mapper = self.kind.mappers.get(entry.full_name)
        if mapper is None:
            return (
                ErrorReason.UNEXPECTED_SCHEMA,
                f"{entry.full_name} not on {self.kind.name}",
                "json",
                ref,
                None,
            )
        obj: Any = None
        try:
            obj = loads_object(value)
            fast = self.kind.json_builders.get(entry.full_name)
            if fast is not None:
                rec = fast(obj, ingest)
                if rec is not None and (not self._check_time or self._time_ok(rec.event_time_ms, ingest)):
                    return rec
                # declined or out of range: the generic path gives the record or the exact error
            d = from_plain_json(obj, entry.parsed, entry.parsed.get("__named_schemas", {}))
        except JsonShapeError as exc:
            return (exc.reason, exc.detail, "json", ref, _firmware(obj))
        return self._finish(d, mapper, SourceFormat.JSON_LEGACY, ingest, "json", ref)

    def _time_ok(self, et: int, ingest: int) -> bool:
        return not (
            et < self._min_et
            or et > self._max_et
            or (ingest >= 0 and (et - ingest > self._future or ingest - et > self._past))
        )

    def _finish(
        self, d: dict[str, Any], mapper: Mapper, sf: SourceFormat, ingest: int, fmt: str, ref: str
    ) -> Any:
        try:
            rec = mapper(d, sf, ingest)
        except JsonShapeError as exc:
            return (exc.reason, exc.detail, fmt, ref, _firmware(d))
        except (KeyError, TypeError, ValueError) as exc:
            return (
                ErrorReason.INVALID_VALUE,
                f"{type(exc).__name__}: {str(exc)[:200]}",
                fmt,
                ref,
                _firmware(d),
            )
        if self._check_time:
            et = rec.event_time_ms
            if (
                et < self._min_et
                or et > self._max_et
                or (ingest >= 0 and (et - ingest > self._future or ingest - et > self._past))
            ):
                detail = f"event time {et} ms vs ingest {ingest} ms"
                return (ErrorReason.TIMESTAMP_OUT_OF_RANGE, detail, fmt, ref, _firmware(d))
        return rec


def _json_after_ws(value: bytes) -> bool:
    """Leading whitespace then ``{`` (a bare Avro body may start with a whitespace byte)."""
    return value.lstrip(b" \t\r\n")[:1] == b"{"


def _firmware(d: Any) -> str | None:
    """Firmware version if recoverable from a (partially) decoded payload, for dead letters."""
    if isinstance(d, dict):
        for k in ("firmware", "fw", "firmware_version"):
            v = d.get(k)
            if isinstance(v, str):
                return v[:100]
    return None
