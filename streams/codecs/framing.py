"""Wire framings, written and parsed by hand (fastavro has no single-object support).

* Confluent wire format: ``0x00`` + 4-byte big-endian schema id + Avro binary body.
* Avro single-object encoding: ``0xC3 0x01`` + 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema's Parsing Canonical Form + Avro binary body.
* JSON: one UTF-8 JSON object, no prefix.
* bare Avro ("avro"): an Avro binary body with no prefix; only readable when the
  ``fg-schema`` and ``fg-schema-version`` headers name its writer schema.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CONFLUENT_HEADER_SIZE",
    "CONFLUENT_MAGIC",
    "SINGLE_OBJECT_HEADER_SIZE",
    "SINGLE_OBJECT_MAGIC",
    "Framing",
    "frame_confluent",
    "frame_single_object",
    "looks_like_json",
    "parse_confluent_id",
    "parse_single_object_fingerprint",
]

CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_SIZE = 10
_JSON_START = frozenset(b"{ \t\r\n")


class Framing(StrEnum):
    """How one message's bytes are framed (also the value of the ``fg-format`` header)."""

    CONFLUENT = "confluent"
    SINGLE_OBJECT = "single-object"
    JSON = "json"
    AVRO = "avro"  # bare Avro binary; schema named by headers


def frame_confluent(schema_id: int, body: bytes) -> bytes:
    """Prefix ``body`` with the Confluent wire header for ``schema_id``."""
    if not 0 <= schema_id < 1 << 32:
        raise ValueError(f"schema id {schema_id} does not fit 4 bytes")
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def frame_single_object(fingerprint: bytes, body: bytes) -> bytes:
    """Prefix ``body`` with the single-object header for an 8-byte little-endian fingerprint."""
    if len(fingerprint) != 8:
        raise ValueError("a CRC-64-AVRO fingerprint is 8 bytes")
    return SINGLE_OBJECT_MAGIC + fingerprint + body


def parse_confluent_id(value: bytes) -> int | None:
    """The schema id of a Confluent-framed value, or None if the header is incomplete."""
    if len(value) < CONFLUENT_HEADER_SIZE or value[0] != CONFLUENT_MAGIC:
        return None
    return int.from_bytes(value[1:5], "big")


def parse_single_object_fingerprint(value: bytes) -> bytes | None:
    """The 8 fingerprint bytes of a single-object value, or None if the header is incomplete."""
    if len(value) < SINGLE_OBJECT_HEADER_SIZE or value[:2] != SINGLE_OBJECT_MAGIC:
        return None
    return value[2:10]


def looks_like_json(value: bytes) -> bool:
    """True when the first byte could open a JSON object (``{`` or whitespace)."""
    return bool(value) and value[0] in _JSON_START
