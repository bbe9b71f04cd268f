"""Schemas and codecs: every payload generation in, one canonical shape out.

Hot path (one per consumer)::

    decoder = Decoder(TELEMETRY)               # or ACK, DEVICE, OUTPUT; resolver=/limits= optional
    records, errors = decoder.decode_batch(consumer.consume(num_messages=500, timeout=0.1))
    for err in errors:                         # DecodeError values, never exceptions
        value, headers = encoder.encode(err)   # -> fleet.deadletter (deadletter.v1)

Outputs::

    encoder = Encoder()                        # or Encoder(resolver=RegistryResolver.from_url(url, cat))
    value, headers = encoder.encode(decision, Framing.SINGLE_OBJECT)

See ``docs/payload-formats.md`` for formats, detection and reason codes.
"""

from __future__ import annotations

from streams.codecs.catalogue import SchemaCatalogue, SchemaEntry, crc64_avro, default_catalogue
from streams.codecs.deadletter import DeadLetter
from streams.codecs.decoder import DecodeLimits, Decoder
from streams.codecs.encoder import Encoder
from streams.codecs.errors import CodecError, DecodeError, ErrorReason, SchemaNotFound
from streams.codecs.framing import Framing, frame_confluent, frame_single_object
from streams.codecs.headers import (
    H_ACTION,
    H_DECISION_ID,
    H_FORMAT,
    H_REASON,
    H_ROLLOUT_ID,
    H_SCHEMA,
    H_SCHEMA_VERSION,
)
from streams.codecs.kinds import ACK, DEVICE, OUTPUT, TELEMETRY, StreamKind
from streams.codecs.resolver import LocalResolver, RegistryResolver, RegistryUnavailable, SchemaResolver

__all__ = [
    "ACK",
    "DEVICE",
    "H_ACTION",
    "H_DECISION_ID",
    "H_FORMAT",
    "H_REASON",
    "H_ROLLOUT_ID",
    "H_SCHEMA",
    "H_SCHEMA_VERSION",
    "OUTPUT",
    "TELEMETRY",
    "CodecError",
    "DeadLetter",
    "DecodeError",
    "DecodeLimits",
    "Decoder",
    "Encoder",
    "ErrorReason",
    "Framing",
    "LocalResolver",
    "RegistryResolver",
    "RegistryUnavailable",
    "SchemaCatalogue",
    "SchemaEntry",
    "SchemaNotFound",
    "SchemaResolver",
    "StreamKind",
    "crc64_avro",
    "default_catalogue",
    "frame_confluent",
    "frame_single_object",
]
