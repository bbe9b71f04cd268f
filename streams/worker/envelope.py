"""Envelopes on the internal `partials` topic (schema: schemas/partial_envelope.v1.avsc)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer

from streams.codecs import H_ROLLOUT_ID, H_SCHEMA, H_SCHEMA_VERSION, default_catalogue, frame_single_object
from streams.codecs.catalogue import SchemaEntry

__all__ = ["ENVELOPE_NAME", "Envelope", "EnvelopeKind", "decode_envelope", "encode_envelope"]

ENVELOPE_NAME = "dev.fleetgate.internal.PartialEnvelope"


class EnvelopeKind(StrEnum):
    PARTIAL = "PARTIAL"
    PLAN = "PLAN"
    HEARTBEAT = "HEARTBEAT"


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: EnvelopeKind
    rollout_id: str
    source_partition: int
    sequence: int
    watermark_ms: int
    payload: bytes
    idle: bool = False


def _entry() -> SchemaEntry:
    return default_catalogue().get(ENVELOPE_NAME)


def encode_envelope(env: Envelope) -> tuple[bytes, list[tuple[str, bytes]]]:
    entry = _entry()
    buf = io.BytesIO()
    schemaless_writer(
        buf,
        entry.parsed,
        {
            "kind": env.kind.value,
            "rollout_id": env.rollout_id,
            "source_partition": env.source_partition,
            "sequence": env.sequence,
            "watermark_ms": env.watermark_ms,
            "payload": env.payload,
            "idle": env.idle,
        },
    )
    headers = [
        (H_SCHEMA, entry.full_name.encode()),
        (H_SCHEMA_VERSION, str(entry.version).encode()),
        (H_ROLLOUT_ID, env.rollout_id.encode()),
    ]
    return frame_single_object(entry.fingerprint, buf.getvalue()), headers


def decode_envelope(value: bytes) -> Envelope:
    """Decode an envelope; raises ValueError on anything but our own single-object framing."""
    entry = _entry()
    if len(value) < 10 or value[:2] != b"\xc3\x01" or value[2:10] != entry.fingerprint:
        raise ValueError("not a partial envelope (single-object framing with its fingerprint expected)")
    d = cast(dict[str, Any], schemaless_reader(io.BytesIO(value[10:]), entry.parsed, None))
    return Envelope(
        EnvelopeKind(d["kind"]),
        d["rollout_id"],
        d["source_partition"],
        d["sequence"],
        d["watermark_ms"],
        d["payload"],
        d["idle"],
    )
