"""Decoding into canonical records or DecodeError values, one message or a consumed batch.

:class:`Decoder` is the codecs' entry point for one stream kind: :meth:`Decoder.decode` for one
message, :meth:`Decoder.decode_batch` for a consumed batch (on the compiled decoder when it is
built, ``streams/codecs/native.py``).  It builds on :class:`~streams.codecs.reading.MessageReader`
(framing detection and the Avro and JSON readers) and
:class:`~streams.codecs.planlookup.PlanLookup` (which read plan a schema reference selects,
cached).  This module owns the batch loop with its inlined hot path and the dead letters: a
failure becomes a :class:`DecodeError` with the message's context.

Nothing here raises on bad input and nothing reads a clock: the caller passes the
Kafka message timestamp as ``ingest_time_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.codecs.catalogue import SchemaCatalogue, default_catalogue
from streams.codecs.errors import DecodeError, ErrorReason
from streams.codecs.headers import normalize_headers
from streams.codecs.jsonform import loads_plain_object
from streams.codecs.kinds import ACK, OUTPUT, TELEMETRY, StreamKind
from streams.codecs.native import native_batch
from streams.codecs.reading import MessageReader
from streams.codecs.readplan import DecodeLimits
from streams.codecs.resolver import LocalResolver, SchemaResolver

__all__ = ["DecodeLimits", "Decoder", "Message"]

Message = tuple[Any, ...]  # (value, headers, timestamp_ms, topic, partition, offset[, key])


class Decoder(MessageReader):
    """Decodes one stream kind (telemetry, ack, device, output) into canonical records."""

    def __init__(
        self,
        kind: StreamKind = TELEMETRY,
        catalogue: SchemaCatalogue | None = None,
        resolver: SchemaResolver | None = None,
        limits: DecodeLimits | None = None,
        native: bool | None = None,
    ) -> None:
        catalogue = catalogue or default_catalogue()
        super().__init__(
            kind,
            catalogue,
            resolver or LocalResolver(catalogue),
            limits or DecodeLimits(max_payload_bytes=kind.default_max_payload_bytes),
        )
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


def _partition_eof() -> int:
    try:
        from confluent_kafka import KafkaError

        return int(KafkaError._PARTITION_EOF)
    except ImportError:  # pragma: no cover
        return -191


_PARTITION_EOF = _partition_eof()
