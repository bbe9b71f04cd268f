"""Per-message format detection and decoding into canonical records or DecodeError values.

Detection order for each message (after the size check):

1. ``fg-format`` header, when present, forces the framing;
2. first byte ``0x00`` -> Confluent wire format (id -> schema via the resolver);
3. ``0xC3 0x01`` -> Avro single-object (fingerprint -> schema via ``schemas/``);
4. ``{`` or whitespace -> JSON (shape from ``fg-schema``/``fg-schema-version`` headers,
   else the stream's default JSON shape, e.g. legacy telemetry);
5. anything else with ``fg-schema`` + ``fg-schema-version`` headers -> bare Avro;
6. otherwise ``unknown_format``.

Avro bodies are read with ``fastavro.schemaless_reader`` and a per-writer *read plan*
cached on first sight (by schema id, fingerprint or header): the writer's parsed
schema, and the latest reader schema of the same name when they differ.  When the
reader only *adds* defaulted fields to primitive writer fields (v1 -> v2) the plan
reads with the writer schema and fills the reader's defaults itself -- the same
result as fastavro's resolution (tested) at a third of the cost; any other
difference (enums, promotions, removed fields) uses fastavro's resolution.

Nothing here raises on bad input and nothing reads a clock: the caller passes the
Kafka message timestamp as ``ingest_time_ms``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader
from fastavro.read import SchemaResolutionError

from gates.events import SourceFormat
from streams.codecs.catalogue import SchemaCatalogue, SchemaEntry, default_catalogue
from streams.codecs.errors import DecodeError, ErrorReason
from streams.codecs.framing import Framing
from streams.codecs.headers import H_FORMAT, H_SCHEMA, H_SCHEMA_VERSION, header_text, normalize_headers
from streams.codecs.jsonform import JsonShapeError, from_plain_json, loads_object, loads_plain_object
from streams.codecs.kinds import ACK, OUTPUT, TELEMETRY, Mapper, StreamKind
from streams.codecs.native import native_batch
from streams.codecs.readplan import DecodeLimits, ReadPlan
from streams.codecs.resolver import LocalResolver, RegistryUnavailable, SchemaResolver

__all__ = ["DecodeLimits", "Decoder", "Message"]

Message = tuple[Any, ...]  # (value, headers, timestamp_ms, topic, partition, offset[, key])

_JSON_START = frozenset(b" \t\r\n")
_MAX_NEGATIVE_CACHE = 4096  # unknown ids/fingerprints come from untrusted bytes: bound the cache
_FRAMINGS = frozenset(f.value for f in Framing)


class Decoder:
    """Decodes one stream kind (telemetry, ack, device, output) into canonical records."""

    def __init__(
        self,
        kind: StreamKind = TELEMETRY,
        catalogue: SchemaCatalogue | None = None,
        resolver: SchemaResolver | None = None,
        limits: DecodeLimits | None = None,
        native: bool | None = None,
    ) -> None:
        self.kind = kind
        self.catalogue = catalogue or default_catalogue()
        self.resolver: SchemaResolver = resolver or LocalResolver(self.catalogue)
        self.limits = limits or DecodeLimits(max_payload_bytes=kind.default_max_payload_bytes)
        self._max = self.limits.max_payload_bytes
        self._check_time = kind.check_time
        self._min_et = self.limits.min_event_time_ms
        self._max_et = self.limits.max_event_time_ms
        self._future = self.limits.max_future_skew_ms
        self._past = self.limits.max_past_skew_ms
        self._by_id: dict[int, Any] = {}  # _Plan or a failure tuple
        self._by_fp: dict[bytes, Any] = {}
        self._by_entry: dict[int, Any] = {}
        self._by_header: dict[tuple[str | None, str | None, str | None], Any] = {}
        self._by_raw_header: dict[tuple[Any, ...], Any] = {}
        self._json_fast_by_hint: dict[Any, Any] = {}  # None, a SchemaEntry (hashed by identity) or an error
        # the compiled batch path (streams/codecs/native.py): None -> when built and FLEETGATE_NATIVE
        # is not 0, True -> required, False -> pure Python (the reference)
        self._native = None if native is False else native_batch(self, required=native is True)

    @classmethod
    def telemetry(cls, **kw: Any) -> Decoder:
        return cls(TELEMETRY, **kw)

    @classmethod
    def ack(cls, **kw: Any) -> Decoder:
        return cls(ACK, **kw)

    @classmethod
    def output(cls, **kw: Any) -> Decoder:
        return cls(OUTPUT, **kw)

    # ------------------------------------------------------------------ plans
    def _plan(self, entry: SchemaEntry, ref: str) -> Any:
        mapper = self.kind.mappers.get(entry.full_name)
        if mapper is None or entry.json_only:
            return (ErrorReason.UNEXPECTED_SCHEMA, f"{entry.full_name} not on {self.kind.name} streams", ref)
        reader = self.catalogue.find(entry.full_name) or entry
        plan = ReadPlan(entry, reader, mapper, ref, self.kind.builders.get(entry.full_name))
        if plan.defaults is not None and plan.defaults == self.kind.self_defaults.get(entry.full_name):
            plan.defaults = None  # the mapper applies exactly these defaults itself
        return plan

    def _safe_plan(self, entry: SchemaEntry, ref: str) -> Any:
        try:
            return self._plan(entry, ref)
        except Exception as exc:  # e.g. a registry writer schema fastavro cannot resolve
            return (ErrorReason.SCHEMA_RESOLUTION, f"{type(exc).__name__}: {exc}"[:200], ref)

    def _plan_for_id(self, sid: int) -> Any:
        plan: Any
        try:
            entry = self.resolver.schema_for_id(sid)
        except RegistryUnavailable as exc:
            return (ErrorReason.REGISTRY_UNAVAILABLE, str(exc)[:200], f"id:{sid}")  # not cached: retried
        except Exception as exc:  # a registry schema fastavro cannot parse
            entry, plan = None, (ErrorReason.SCHEMA_RESOLUTION, f"schema id {sid}: {exc}"[:200], f"id:{sid}")
        else:
            if entry is None:
                plan = (ErrorReason.UNKNOWN_SCHEMA_ID, f"schema id {sid}", f"id:{sid}")
            else:
                plan = self._safe_plan(entry, f"id:{sid}")
        if entry is not None or len(self._by_id) < _MAX_NEGATIVE_CACHE:
            self._by_id[sid] = plan
        return plan

    def _plan_for_fp(self, fp: bytes) -> Any:
        entry = self.catalogue.by_fingerprint.get(fp)
        if entry is None:
            plan: Any = (ErrorReason.UNKNOWN_FINGERPRINT, f"fingerprint {fp.hex()}", f"fp:{fp.hex()}")
        else:
            plan = self._plan(entry, f"fp:{fp.hex()}")
        if entry is not None or len(self._by_fp) < _MAX_NEGATIVE_CACHE:
            self._by_fp[fp] = plan
        return plan

    def _header_info(self, headers: Any) -> Any:
        """(forced framing, plan-or-error-or-None) from fg-format / fg-schema / fg-schema-version.

        Cached on the raw headers when they are a list/tuple of hashable pairs (a pure
        function of them): most producers send the same few header sets over and over.
        """
        raw: Any = None
        if headers.__class__ is list or headers.__class__ is tuple:
            try:
                raw = tuple(headers)
                hit = self._by_raw_header.get(raw)
            except TypeError:  # unhashable values (e.g. bytearray): no raw cache
                raw = hit = None
            if hit is not None:
                return hit
        hit = self._header_info_uncached(headers)
        if raw is not None and len(self._by_raw_header) < 1024:
            self._by_raw_header[raw] = hit
        return hit

    def _header_info_uncached(self, headers: Any) -> Any:
        name = header_text(headers, H_SCHEMA)
        ver = header_text(headers, H_SCHEMA_VERSION)
        fmt = header_text(headers, H_FORMAT)
        key = (name, ver, fmt)
        hit = self._by_header.get(key)
        if hit is not None:
            return hit
        forced = fmt if fmt in _FRAMINGS else None
        plan: Any = None
        if name is not None:
            try:
                entry = self.catalogue.find(name, int(ver) if ver is not None else None)
            except ValueError:
                entry = None
            if entry is None:
                plan = (ErrorReason.UNKNOWN_SCHEMA, f"headers name {name!r} version {ver!r}")
            else:
                plan = entry  # resolved to a read plan (Avro) or a JSON shape when used
        hit = (forced, plan)
        if len(self._by_header) < 1024:
            self._by_header[key] = hit
        return hit

    # ------------------------------------------------------------------ decode
    def decode(
        self,
        value: bytes | None,
        headers: Any = None,
        ingest_time_ms: int = -1,
        topic: str = "",
        partition: int = -1,
        offset: int = -1,
        key: bytes | None = None,
    ) -> Any:
        """One message -> canonical record or DecodeError.  Never raises on bad input."""
        r = self._decode(value, headers, ingest_time_ms)
        if r.__class__ is tuple:
            reason, detail, fmt, ref, firmware = r
            return DecodeError(
                reason, detail, value, normalize_headers(headers), topic, partition, offset,
                ingest_time_ms, key, fmt, ref, firmware,
            )  # fmt: skip
        return r

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

    def _json_fast(self, hinted: Any) -> Any:
        """The JSON fast builder _json would use for this header hint, or None (cached)."""
        try:
            return self._json_fast_by_hint[hinted]
        except (KeyError, TypeError):
            pass
        fast = self._json_fast_uncached(hinted)
        if len(self._json_fast_by_hint) < 1024:
            with contextlib.suppress(TypeError):
                self._json_fast_by_hint[hinted] = fast
        return fast

    def _json_fast_uncached(self, hinted: Any) -> Any:
        if hinted is None:
            name = self.kind.json_default
            if name is None:
                return None
        elif hinted.__class__ is tuple:
            return None
        else:
            name = (self.catalogue.find(hinted.full_name) or hinted).full_name
        if name not in self.kind.mappers:
            return None
        return self.kind.json_builders.get(name)

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

    # ------------------------------------------------------------------ batches
    def decode_batch(self, messages: Iterable[Any]) -> tuple[list[Any], list[DecodeError]]:
        """Decode a batch of tuples or ``confluent_kafka.Message`` objects.

        Tuples are ``(value, headers, timestamp_ms, topic, partition, offset[, key])``.
        Partition-EOF events are skipped; other consumer errors become ``consumer_error``.
        Returns ``(records, errors)``, each in input order.  Runs on the compiled decoder when
        it is built (``streams/codecs/native.py``), with the same results.
        """
        if self._native is not None:
            return self._native.decode_batch(messages)
        return self._decode_batch_py(messages)

    def _decode_batch_py(self, messages: Iterable[Any]) -> tuple[list[Any], list[DecodeError]]:
        """:meth:`decode_batch` in pure Python: the reference, and the native path's fallback."""
        records: list[Any] = []
        errors: list[DecodeError] = []
        ok = records.append
        bad = errors.append
        decode = self._decode
        by_id, by_fp, max_bytes = self._by_id, self._by_fp, self._max
        check, min_et, max_et = self._check_time, self._min_et, self._max_et
        future, past = self._future, self._past
        last_headers: Any = None  # header info of the same headers object as the last message
        last_forced: Any = None
        last_json: Any = self._json_fast(None)
        no_headers_json = last_json
        for m in messages:
            if m.__class__ is tuple:
                value, headers, ts = m[0], m[1], m[2]
            else:
                err = m.error()
                if err is not None:
                    if err.code() != _PARTITION_EOF:
                        bad(_consumer_error(m, err))
                    continue
                value, headers, ts = m.value(), m.headers(), m.timestamp()[1]
            # hot path: framed Avro of a schema with a generated reader (same result as _decode)
            if value.__class__ is bytes and 10 <= len(value) <= max_bytes:
                forced = None
                json_fast = no_headers_json
                if headers:
                    if headers is not last_headers:
                        last_forced, hinted = self._header_info(headers)
                        last_json = self._json_fast(hinted)
                        last_headers = headers
                    forced = last_forced
                    json_fast = last_json
                b0 = value[0]
                plan: Any = None
                if b0 == 0x7B:
                    if json_fast is not None and (forced is None or forced == "json"):
                        obj = loads_plain_object(value)  # None: the generic path decides
                        if obj is not None:
                            rec = json_fast(obj, ts)
                            if rec is not None:
                                et = rec.event_time_ms
                                if not check or not (
                                    et < min_et
                                    or et > max_et
                                    or (ts >= 0 and (et - ts > future or ts - et > past))
                                ):
                                    ok(rec)
                                    continue
                elif b0 == 0xC3:
                    if value[1] == 1 and (forced is None or forced == "single-object"):
                        plan = by_fp.get(value[2:10])
                        start = 10
                elif b0 == 0 and (forced is None or forced == "confluent"):
                    plan = by_id.get(int.from_bytes(value[1:5], "big"))
                    start = 5
                if plan is not None and plan.__class__ is not tuple and plan.fast is not None:
                    rec = plan.fast(value, start, ts)
                    if rec is not None:
                        if not check:
                            ok(rec)
                            continue
                        et = rec.event_time_ms
                        if not (
                            et < min_et or et > max_et or (ts >= 0 and (et - ts > future or ts - et > past))
                        ):
                            ok(rec)
                            continue
            r = decode(value, headers, ts)
            if r.__class__ is tuple:
                if m.__class__ is tuple:
                    bad(self.decode(*m))  # rare path: rebuild with the full context
                    continue
                reason, detail, fmt, ref, firmware = r
                bad(DecodeError(
                    reason, detail, value, normalize_headers(headers), m.topic(), m.partition(), m.offset(),
                    ts, m.key(), fmt, ref, firmware,
                ))  # fmt: skip
            else:
                ok(r)
        return records, errors


def _consumer_error(m: Any, err: Any) -> DecodeError:
    p, o = m.partition(), m.offset()
    return DecodeError(
        ErrorReason.CONSUMER_ERROR, str(err)[:200], m.value(), (), m.topic() or "",
        -1 if p is None else p, -1 if o is None else o,
    )  # fmt: skip


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


def _partition_eof() -> int:
    try:
        from confluent_kafka import KafkaError

        return int(KafkaError._PARTITION_EOF)
    except ImportError:  # pragma: no cover
        return -191


_PARTITION_EOF = _partition_eof()
