"""Decode failures as values, and the one root exception of the codec package.

A payload the codec cannot read is *data*: :class:`DecodeError` keeps the original
bytes, headers and source position so the shell can write it to ``fleet.deadletter``.
Exceptions (:class:`CodecError` and subclasses) are reserved for programming or
configuration mistakes (an unknown output type, a missing schema file).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CodecError", "DecodeError", "ErrorReason", "Headers", "SchemaNotFound"]

Headers = tuple[tuple[str, bytes | None], ...]


class ErrorReason(StrEnum):
    """Stable reason codes for decode failures (also the ``reason`` of a dead letter)."""

    EMPTY_PAYLOAD = "empty_payload"  # null (tombstone) or zero-length value
    OVERSIZED = "oversized"  # value longer than DecodeLimits.max_payload_bytes
    UNKNOWN_FORMAT = "unknown_format"  # not Confluent, single-object, JSON, and no schema header
    TRUNCATED_FRAME = "truncated_frame"  # framing header shorter than its fixed size
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"  # Confluent id unknown locally / to the registry
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"  # single-object fingerprint not in schemas/
    UNKNOWN_SCHEMA = "unknown_schema"  # fg-schema / fg-schema-version header names no schema
    UNEXPECTED_SCHEMA = "unexpected_schema"  # a known schema, but not one this stream carries
    REGISTRY_UNAVAILABLE = "registry_unavailable"  # schema registry lookup failed (retryable)
    TRUNCATED_AVRO = "truncated_avro"  # Avro body ended early (or declared a length past its end)
    CORRUPT_AVRO = "corrupt_avro"  # Avro body unreadable (bad union index, bad varint, ...)
    TRAILING_BYTES = "trailing_bytes"  # Avro body longer than the record it encodes
    SCHEMA_RESOLUTION = "schema_resolution"  # writer schema cannot be read with the reader schema
    INVALID_UTF8 = "invalid_utf8"  # JSON text or an Avro string is not UTF-8
    INVALID_JSON = "invalid_json"  # not parseable JSON (incl. NaN/Infinity, absurd nesting)
    WRONG_TYPE = "wrong_type"  # a field (or the document) has the wrong JSON type
    MISSING_FIELD = "missing_field"  # a required field is absent
    INVALID_VALUE = "invalid_value"  # well-typed but impossible (empty id, NaN metric, negative count)
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"  # event time beyond the clock-skew bounds
    CONSUMER_ERROR = "consumer_error"  # the Kafka client handed us an error instead of a message


@dataclass(frozen=True, slots=True)
class DecodeError:
    """One message that could not be decoded; everything needed for its dead letter."""

    reason: ErrorReason
    detail: str
    value: bytes | None
    headers: Headers = ()
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int = -1
    key: bytes | None = None
    detected_format: str | None = None
    schema_ref: str | None = None
    firmware_version: str | None = None


class CodecError(Exception):
    """Root of every exception raised by ``streams.codecs`` (bugs and misconfiguration only)."""


class SchemaNotFound(CodecError):
    """A schema asked for by name/version, id or type is not in the catalogue."""
