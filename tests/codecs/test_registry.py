"""Confluent wire format through a schema registry (confluent-kafka's in-process mock://)."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("confluent_kafka.schema_registry")

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402

from streams.codecs import (  # noqa: E402
    OUTPUT,
    TELEMETRY,
    DecodeError,
    Decoder,
    Encoder,
    ErrorReason,
    Framing,
    RegistryResolver,
    default_catalogue,
)
from streams.codecs.resolver import topic_name_subject  # noqa: E402
from tests.codecs.golden_cases import DECISION, INGEST  # noqa: E402
from tests.codecs.golden_cases import TELEMETRY as TEL  # noqa: E402

CAT = default_catalogue()


@pytest.fixture
def client() -> SchemaRegistryClient:
    """An in-process registry (state lives in the client object, so tests share the object)."""
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


def test_register_all_and_resolve_ids(client: SchemaRegistryClient) -> None:
    resolver = RegistryResolver(client, CAT)
    ids = resolver.register_all()
    assert set(ids) == {f"{e.subject}.v{e.version}" for e in CAT.entries if not e.json_only}
    assert len(set(ids.values())) == len(ids)
    # a fresh resolver on the same registry resolves ids back to our catalogue entries
    fresh = RegistryResolver(client, CAT)
    for e in CAT.entries:
        if not e.json_only:
            assert fresh.schema_for_id(ids[f"{e.subject}.v{e.version}"]) is e
    assert fresh.schema_for_id(987_654) is None


def test_decision_round_trip_through_registry_ids(client: SchemaRegistryClient) -> None:
    resolver = RegistryResolver(client, CAT)
    value, headers = Encoder(resolver=resolver).encode(DECISION, Framing.CONFLUENT)
    sid = int.from_bytes(value[1:5], "big")
    assert value[0] == 0 and sid == resolver.id_for(CAT.get("decision", 1))  # a stage decision: v1
    reader = Decoder(OUTPUT, resolver=RegistryResolver(client, CAT))
    assert reader.decode(value, headers) == DECISION


def test_downstream_confluent_deserializer_reads_our_decisions(client: SchemaRegistryClient) -> None:
    """Alerting services use confluent-kafka's own AvroDeserializer: it must read our bytes."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    resolver = RegistryResolver(client, CAT, subject_for=topic_name_subject)
    value, _ = Encoder(resolver=resolver).encode(DECISION, Framing.CONFLUENT, topic="fleet.control")
    got = AvroDeserializer(client)(value, SerializationContext("fleet.control", MessageField.VALUE))
    assert got["decision_id"] == DECISION.decision_id and got["action"] == "PAUSE"
    assert client.get_latest_version("fleet.control-value").schema_id == int.from_bytes(value[1:5], "big")


def test_writer_schema_unknown_to_catalogue_is_resolved_to_our_reader(client: SchemaRegistryClient) -> None:
    """A newer firmware registered telemetry v3 (an extra optional field) that schemas/ lacks."""
    import json

    v3 = json.loads(CAT.get("telemetry", 2).text)
    v3["fields"].append({"name": "fan_rpm", "type": ["null", "int"], "default": None, "doc": "rpm"})
    sid = client.register_schema("dev.fleetgate.device.Telemetry", Schema(json.dumps(v3), "AVRO"))
    from streams.codecs.catalogue import entry_from_text

    v3e = entry_from_text(json.dumps(v3), "telemetry", 3)
    from streams.codecs.mapping import telemetry_to_avro

    body = Encoder.avro_body(v3e, {**telemetry_to_avro(TEL, 2), "fan_rpm": 1200})
    value = b"\x00" + sid.to_bytes(4, "big") + body
    got = Decoder(TELEMETRY, resolver=RegistryResolver(client, CAT)).decode(value, None, INGEST)
    assert not isinstance(got, DecodeError), got
    assert got.device_id == TEL.device_id and got.model == TEL.model


def test_unknown_id_and_unavailable_registry_are_distinct_reasons() -> None:
    value = b"\x00\x00\x00\x10\x00" + b"\x02"
    resolver = RegistryResolver.from_url(f"mock://{uuid.uuid4().hex}", CAT)
    got = Decoder(TELEMETRY, resolver=resolver).decode(value, None, INGEST)
    assert got.reason is ErrorReason.UNKNOWN_SCHEMA_ID

    class Down:
        def get_schema(self, schema_id: int) -> None:
            raise ConnectionError("registry down")

    dec = Decoder(TELEMETRY, resolver=RegistryResolver(Down(), CAT))
    assert dec.decode(value, None, INGEST).reason is ErrorReason.REGISTRY_UNAVAILABLE
