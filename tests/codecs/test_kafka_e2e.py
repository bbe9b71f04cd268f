"""End to end on the real broker: mixed payload generations in, canonical records and
dead letters out, dead letters read back byte for byte.  No mocks."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from gates.events import SourceFormat, Telemetry
from streams.codecs import OUTPUT, TELEMETRY, DeadLetter, DecodeError, Decoder, Encoder, ErrorReason, Framing
from tests.codecs.golden_cases import DECISION, INGEST

pytestmark = pytest.mark.kafka

GOOD_FORMATS = [
    (Framing.JSON, None, SourceFormat.JSON_LEGACY),
    (Framing.CONFLUENT, 1, SourceFormat.AVRO_V1),
    (Framing.SINGLE_OBJECT, 1, SourceFormat.AVRO_V1),
    (Framing.CONFLUENT, 2, SourceFormat.AVRO_V2),
    (Framing.SINGLE_OBJECT, 2, SourceFormat.AVRO_V2),
    (Framing.AVRO, 2, SourceFormat.AVRO_V2),  # bare Avro, schema named by headers
]


def _telemetry(i: int) -> Telemetry:
    return Telemetry(
        f"dev-{i:05d}", INGEST - 1000 - i, INGEST, "4.2.0", SourceFormat.INTERNAL, model="gw-200",
        errors=i % 3, metrics={"temperature_c": 40.0 + i % 7, "cpu_pct": 10.0},
    )  # fmt: skip


def _consume_all(consumer: Any, expected: int, deadline_s: float = 60.0) -> list[Any]:
    got: list[Any] = []
    end = time.monotonic() + deadline_s
    while len(got) < expected and time.monotonic() < end:
        for m in consumer.consume(num_messages=64, timeout=0.5):
            if m.error() is None:
                got.append(m)
    return got


def test_mixed_formats_to_canonical_records_and_dead_letters(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    from confluent_kafka import Consumer, Producer

    telemetry_topic = new_topic("codecs.telemetry", partitions=3)
    dlq_topic = new_topic("codecs.deadletter")
    control_topic = new_topic("codecs.control")
    enc = Encoder()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    positions: dict[bytes, tuple[int, int]] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        positions[msg.key()] = (msg.partition(), msg.offset())

    n_good = 120
    for i in range(n_good):
        framing, version, _ = GOOD_FORMATS[i % len(GOOD_FORMATS)]
        value, headers = enc.encode(_telemetry(i), framing, version=version)
        # devices send no fg-* headers unless the payload is bare Avro
        hdrs = headers if framing is Framing.AVRO else None
        producer.produce(telemetry_topic, value, key=f"good-{i}".encode(), headers=hdrs, timestamp=INGEST,
                         on_delivery=on_delivery)  # fmt: skip
    good_v2 = enc.encode(_telemetry(999), Framing.SINGLE_OBJECT, version=2)[0]
    future = enc.encode(
        Telemetry("dev-future", INGEST + 86_400_000, INGEST, "9.9.9", SourceFormat.INTERNAL),
        Framing.CONFLUENT,
    )[0]
    bad = {
        b"bad-truncated": (good_v2[:-4], ErrorReason.TRUNCATED_AVRO),
        b"bad-unknown-id": (b"\x00\x00\x00\x04\xd2" + good_v2[10:], ErrorReason.UNKNOWN_SCHEMA_ID),
        b"bad-unknown-fp": (b"\xc3\x01" + b"\x42" * 8 + good_v2[10:], ErrorReason.UNKNOWN_FINGERPRINT),
        b"bad-json": (b'{"id": "dev-1", "t": ', ErrorReason.INVALID_JSON),
        b"bad-utf8": (b'{"id": "\xff\xfe"}', ErrorReason.INVALID_UTF8),
        b"bad-missing": (b'{"id": "dev-1", "fw": "1.0"}', ErrorReason.MISSING_FIELD),
        b"bad-garbage": (b"\x13\x37 not a payload", ErrorReason.UNKNOWN_FORMAT),
        b"bad-oversized": (b"{" + b" " * 70_000 + b"}", ErrorReason.OVERSIZED),
        b"bad-future": (future, ErrorReason.TIMESTAMP_OUT_OF_RANGE),
        b"bad-empty": (b"", ErrorReason.EMPTY_PAYLOAD),
    }
    for key, (value, _) in bad.items():
        producer.produce(telemetry_topic, value, key=key, headers=[("trace-id", key)], timestamp=INGEST,
                         on_delivery=on_delivery)  # fmt: skip
    assert producer.flush(30) == 0

    # --- the shell's hot loop: consume in batches, decode, dead-letter the failures
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"codecs-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([telemetry_topic])
    decoder = Decoder(TELEMETRY)
    records: list[Any] = []
    errors: list[DecodeError] = []
    try:
        msgs = _consume_all(consumer, n_good + len(bad))
        for i in range(0, len(msgs), 50):
            r, e = decoder.decode_batch(msgs[i : i + 50])
            records += r
            errors += e
    finally:
        consumer.close()
    assert len(records) + len(errors) == n_good + len(bad)

    assert len(records) == n_good
    per_format = n_good // len(GOOD_FORMATS)
    assert Counter(r.source_format for r in records) == Counter(
        {sf: per_format * sum(1 for *_, s in GOOD_FORMATS if s is sf) for *_, sf in GOOD_FORMATS}
    )
    assert {r.device_id for r in records} == {f"dev-{i:05d}" for i in range(n_good)}
    assert all(r.ingest_time_ms == INGEST for r in records)

    assert {e.key: e.reason for e in errors} == {k: reason for k, (_, reason) in bad.items()}
    for e in errors:
        value, headers = enc.encode(e)  # deadletter.v1, single-object, fg-reason header
        producer.produce(dlq_topic, value, key=e.key, headers=headers)
    value, headers = enc.encode(DECISION, Framing.SINGLE_OBJECT)
    producer.produce(control_topic, value, key=DECISION.rollout_id.encode(), headers=headers)
    assert producer.flush(30) == 0

    # --- read the dead letters (and the decision) back as downstream services would
    reader = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"codecs-dlq-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
    })  # fmt: skip
    reader.subscribe([dlq_topic, control_topic])
    try:
        back = _consume_all(reader, len(bad) + 1)
    finally:
        reader.close()
    out, out_errors = Decoder(OUTPUT).decode_batch(back)
    assert out_errors == []
    letters = {d.key: d for d in out if isinstance(d, DeadLetter)}
    assert [d for d in out if not isinstance(d, DeadLetter)] == [DECISION]
    assert set(letters) == set(bad)
    for key, (value, reason) in bad.items():
        d = letters[key]
        assert d.reason == reason.value
        assert (d.value or b"") == value  # original bytes, byte for byte (an empty value reads back as null)
        assert (d.topic, d.partition, d.offset) == (telemetry_topic, *positions[key])
        assert ("trace-id", key) in d.headers
        assert d.timestamp_ms == INGEST
    assert letters[b"bad-future"].firmware_version == "9.9.9"
    dlq_headers = {m.key(): dict(m.headers() or []) for m in back if m.topic() == dlq_topic}
    assert dlq_headers[b"bad-json"]["fg-reason"] == b"invalid_json"
