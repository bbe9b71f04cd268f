"""The dead-letter record written to ``fleet.deadletter`` (schema ``deadletter.v1``).

A :class:`DeadLetter` is built from a :class:`~streams.codecs.errors.DecodeError`
(:meth:`DeadLetter.from_error`) and is a record type of its own, so reading the
dead-letter topic back yields ``DeadLetter`` values, never confused with a failure
to decode.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.codecs.errors import DecodeError, Headers

__all__ = ["CODEC_VERSION", "DeadLetter"]

CODEC_VERSION = "1"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undecodable message, kept whole: original bytes, headers and position, and why."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    reason: str  # an ErrorReason value (a string, so codes added later still read)
    detail: str = ""
    key: bytes | None = None
    headers: Headers = ()
    detected_format: str | None = None
    schema_ref: str | None = None
    firmware_version: str | None = None
    decoder_version: str = CODEC_VERSION

    @classmethod
    def from_error(cls, e: DecodeError) -> DeadLetter:
        return cls(
            topic=e.topic,
            partition=e.partition,
            offset=e.offset,
            timestamp_ms=e.timestamp_ms,
            value=e.value,
            reason=e.reason.value,
            detail=e.detail,
            key=e.key,
            headers=e.headers,
            detected_format=e.detected_format,
            schema_ref=e.schema_ref,
            firmware_version=e.firmware_version,
        )
