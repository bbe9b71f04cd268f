"""Encoders: canonical and output records -> ``(value_bytes, headers)``.

Framing is chosen per call (per topic in the shell): single-object by default,
Confluent wire format (ids from the resolver: local ids, or a registry that gets
our schemas registered on first use), plain JSON, or bare Avro (schema named by
headers).  Every encoded record carries ``fg-schema``, ``fg-schema-version`` and
``fg-format`` headers, plus ``fg-rollout-id`` / ``fg-decision-id`` / ``fg-action`` /
``fg-reason`` where they apply.

Device records (Telemetry, Ack) can be written in every device generation -- the
fleet simulator uses this: ``version=1`` / ``version=2`` for Avro, ``Framing.JSON``
for legacy JSON telemetry (plain JSON in the ack v2 shape for acks).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from gates.events import Ack, CohortHealth, Decision, DeviceCommand, RolloutPlan, Telemetry
from streams.codecs import mapping, records
from streams.codecs.catalogue import SchemaCatalogue, SchemaEntry, default_catalogue
from streams.codecs.deadletter import DeadLetter
from streams.codecs.errors import CodecError, DecodeError
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
from streams.codecs.jsonform import dumps, to_plain_json
from streams.codecs.kinds import (
    ACK_NAME,
    COHORT_HEALTH_NAME,
    DEADLETTER_NAME,
    DECISION_NAME,
    DEVICE_COMMAND_NAME,
    LEGACY_TELEMETRY_NAME,
    ROLLOUT_PLAN_NAME,
    TELEMETRY_NAME,
)
from streams.codecs.resolver import LocalResolver, SchemaResolver

__all__ = ["Encoder", "OutputHeaders"]

# as confluent-kafka's Producer.produce takes them (a list is invariant: a narrower value type is refused)
OutputHeaders = list[tuple[str, str | bytes | None]]
# records whose older schema versions may still be written on request (golden vectors, the
# simulator's device generations, decisions for v1-only consumers)
_VERSIONED = (TELEMETRY_NAME, ACK_NAME, DECISION_NAME)


class Encoder:
    """Serializes records; one instance per process (it caches schema ids)."""

    def __init__(
        self, catalogue: SchemaCatalogue | None = None, resolver: SchemaResolver | None = None
    ) -> None:
        self.catalogue = catalogue or default_catalogue()
        self.resolver: SchemaResolver = resolver or LocalResolver(self.catalogue)

    def encode(
        self,
        record: Any,
        framing: Framing | str = Framing.SINGLE_OBJECT,
        *,
        version: int | None = None,
        topic: str | None = None,
        signature: bytes | None = None,
        key_id: str | None = None,
    ) -> tuple[bytes, OutputHeaders]:
        """Encode ``record`` with ``framing``; returns ``(value, headers)``.

        Records: Decision, CohortHealth, DeviceCommand, RolloutPlan, DeadLetter (or a
        DecodeError, turned into its DeadLetter), Telemetry and Ack (device formats).

        ``version`` picks the schema version (default: latest; decision.v1 for a decision without
        a slice); ``topic`` feeds a
        registry's subject strategy; ``signature``/``key_id`` fill the reserved
        decision fields (docs/security.md).
        """
        framing = Framing(framing)
        name, datum, extra = self._datum(record, framing, version, signature, key_id)
        if version is None and isinstance(record, Decision) and record.slice is None:
            # a stage decision is written as decision.v1, which every executor reads; only a
            # decision scoped to a slice needs v2 (an executor without it cannot read v2 at all
            # unless a schema registry resolves it)
            version = 1
        entry = self.catalogue.get(name, version if name in _VERSIONED else None)
        if framing is Framing.JSON:
            if name == TELEMETRY_NAME:
                entry = self.catalogue.get(LEGACY_TELEMETRY_NAME)
            named = entry.parsed.get("__named_schemas", {})
            value = dumps(to_plain_json(datum, entry.parsed, named))
        else:
            body = self.avro_body(entry, datum)
            if framing is Framing.SINGLE_OBJECT:
                value = frame_single_object(entry.fingerprint, body)
            elif framing is Framing.CONFLUENT:
                value = frame_confluent(self.resolver.id_for(entry, topic), body)
            else:
                value = body
        headers: OutputHeaders = [
            (H_SCHEMA, entry.full_name.encode()),
            (H_SCHEMA_VERSION, str(entry.version).encode()),
            (H_FORMAT, framing.value.encode()),
        ]
        headers.extend((k, v.encode()) for k, v in extra if v is not None)
        return value, headers

    @staticmethod
    def avro_body(entry: SchemaEntry, datum: dict[str, Any]) -> bytes:
        """Schemaless Avro binary of ``datum`` with ``entry``'s schema."""
        if entry.json_only:
            raise CodecError(f"{entry!r} is a JSON-only shape")
        buf = BytesIO()
        schemaless_writer(buf, entry.parsed, datum)
        return buf.getvalue()

    def _datum(
        self, r: Any, framing: Framing, version: int | None, signature: bytes | None, key_id: str | None
    ) -> tuple[str, dict[str, Any], list[tuple[str, str | None]]]:
        if isinstance(r, Decision):
            if r.slice is not None and version == 1:
                # decision.v1 has no slice: the record would read as a stop of the whole stage
                raise CodecError("a slice decision needs decision.v2 or later")
            return (
                DECISION_NAME,
                records.decision_to_dict(r, signature, key_id),
                [(H_ROLLOUT_ID, r.rollout_id), (H_DECISION_ID, r.decision_id), (H_ACTION, r.action.value)],
            )
        if isinstance(r, CohortHealth):
            return COHORT_HEALTH_NAME, records.cohort_health_to_dict(r), [(H_ROLLOUT_ID, r.rollout_id)]
        if isinstance(r, DeviceCommand):
            return DEVICE_COMMAND_NAME, records.device_command_to_dict(r), [(H_ROLLOUT_ID, r.rollout_id)]
        if isinstance(r, RolloutPlan):
            return ROLLOUT_PLAN_NAME, records.rollout_plan_to_dict(r), [(H_ROLLOUT_ID, r.rollout_id)]
        if isinstance(r, DecodeError):
            r = DeadLetter.from_error(r)
        if isinstance(r, DeadLetter):
            return DEADLETTER_NAME, records.deadletter_to_dict(r), [(H_REASON, r.reason)]
        if isinstance(r, Telemetry):
            if framing is Framing.JSON:
                return TELEMETRY_NAME, mapping.telemetry_to_legacy_json(r), []
            v = version or self.catalogue.latest(TELEMETRY_NAME).version
            return TELEMETRY_NAME, mapping.telemetry_to_avro(r, v), []
        if isinstance(r, Ack):
            v = version or self.catalogue.latest(ACK_NAME).version
            return ACK_NAME, mapping.ack_to_avro(r, v), [(H_ROLLOUT_ID, r.rollout_id)]
        raise CodecError(f"no output schema for {type(r).__name__}")
