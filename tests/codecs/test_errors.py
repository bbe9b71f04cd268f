"""Every way a payload can be bad gives a DecodeError value with a stable reason code."""

from __future__ import annotations

import json

import pytest

from streams.codecs import (
    ACK,
    OUTPUT,
    TELEMETRY,
    DecodeError,
    DecodeLimits,
    Decoder,
    Encoder,
    ErrorReason,
    Framing,
    frame_confluent,
    frame_single_object,
)
from tests.codecs.golden_cases import ACK as ACK_RECORD
from tests.codecs.golden_cases import GOLDEN_DIR, INGEST
from tests.codecs.golden_cases import TELEMETRY as TEL

V2_SO = (GOLDEN_DIR / "telemetry_v2_single_object.bin").read_bytes()
V1_CF = (GOLDEN_DIR / "telemetry_v1_confluent.bin").read_bytes()
LEGACY = (GOLDEN_DIR / "telemetry_legacy_json.bin").read_bytes()


def _json(**kw: object) -> bytes:
    base: dict[str, object] = {"id": "dev-1", "t": INGEST // 1000, "fw": "2.9.3"}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


BAD = [
    (b"", ErrorReason.EMPTY_PAYLOAD),
    (None, ErrorReason.EMPTY_PAYLOAD),
    (b"\xc3\x01" + b"\x00" * 4, ErrorReason.TRUNCATED_FRAME),
    (b"\x00\x00\x00", ErrorReason.TRUNCATED_FRAME),
    (b"\x00\x00\x00\x30\x39" + V1_CF[5:], ErrorReason.UNKNOWN_SCHEMA_ID),
    (b"\xc3\x01" + b"\x11" * 8 + V2_SO[10:], ErrorReason.UNKNOWN_FINGERPRINT),
    (V2_SO[:-3], ErrorReason.TRUNCATED_AVRO),
    (V2_SO + b"\x00\x01", ErrorReason.TRAILING_BYTES),
    (V2_SO[:10] + b"\x06\xff\xfe\xfd" + V2_SO[24:], ErrorReason.INVALID_UTF8),
    (b"\x7f\x45\x4c\x46binary", ErrorReason.UNKNOWN_FORMAT),
    (b"{not json", ErrorReason.INVALID_JSON),
    (b'{"id": NaN}', ErrorReason.INVALID_JSON),
    (b"[" * 20_000 + b"]" * 20_000, ErrorReason.UNKNOWN_FORMAT),  # starts with '[': not an object
    (b'  {"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", ErrorReason.INVALID_JSON),
    (b'{"id": "dev-1", "t": 1700000000, "fw": "\xff"}', ErrorReason.INVALID_UTF8),
    (_json(t="1700000000"), ErrorReason.WRONG_TYPE),
    (_json(t=True), ErrorReason.WRONG_TYPE),
    (_json(temp="hot"), ErrorReason.WRONG_TYPE),
    (_json(fw=...), ErrorReason.MISSING_FIELD),
    (_json(id=""), ErrorReason.INVALID_VALUE),
    (_json(err=-1), ErrorReason.INVALID_VALUE),
    (b'{"id": "d", "t": 1700000000, "fw": "1", "temp": 1e400}', ErrorReason.INVALID_VALUE),
    (_json(t=2**70), ErrorReason.INVALID_VALUE),
    (_json(temp=10**400), ErrorReason.INVALID_VALUE),  # an integer no double holds
    (_json(t=INGEST // 1000 + 3600), ErrorReason.TIMESTAMP_OUT_OF_RANGE),
    (_json(t=INGEST // 1000 - 30 * 86400), ErrorReason.TIMESTAMP_OUT_OF_RANGE),
    (_json(t=0), ErrorReason.TIMESTAMP_OUT_OF_RANGE),
    (b"[1, 2]", ErrorReason.UNKNOWN_FORMAT),
    (b' "just a string"', ErrorReason.UNKNOWN_FORMAT),
]


@pytest.mark.parametrize(("value", "reason"), BAD, ids=[f"{r.value}-{i}" for i, (_, r) in enumerate(BAD)])
def test_bad_payload_reason(value: bytes | None, reason: ErrorReason) -> None:
    headers = [("trace-id", b"abc")]
    got = Decoder(TELEMETRY).decode(value, headers, INGEST, "fleet.telemetry", 4, 99, b"k")
    assert isinstance(got, DecodeError), got
    assert got.reason is reason, got.detail
    assert (got.value, got.headers, got.topic, got.partition, got.offset, got.key, got.timestamp_ms) == (
        value,
        (("trace-id", b"abc"),),
        "fleet.telemetry",
        4,
        99,
        b"k",
        INGEST,
    )


def test_oversized_uses_configured_limit() -> None:
    dec = Decoder(TELEMETRY, limits=DecodeLimits(max_payload_bytes=len(V2_SO) - 1))
    assert dec.decode(V2_SO, None, INGEST).reason is ErrorReason.OVERSIZED
    assert not isinstance(Decoder(TELEMETRY).decode(V2_SO, None, INGEST), DecodeError)


def test_clock_skew_bounds_are_configurable() -> None:
    late = _json(t=INGEST // 1000 - 3600)
    assert not isinstance(Decoder(TELEMETRY).decode(late, None, INGEST), DecodeError)
    strict = Decoder(TELEMETRY, limits=DecodeLimits(max_past_skew_ms=60_000))
    assert strict.decode(late, None, INGEST).reason is ErrorReason.TIMESTAMP_OUT_OF_RANGE
    # without a Kafka timestamp only the absolute bounds apply
    assert not isinstance(strict.decode(late, None, -1), DecodeError)


def test_unexpected_schema_on_the_wrong_stream() -> None:
    ack_bytes, _ = Encoder().encode(ACK_RECORD, Framing.SINGLE_OBJECT)
    got = Decoder(TELEMETRY).decode(ack_bytes, None, INGEST)
    assert got.reason is ErrorReason.UNEXPECTED_SCHEMA
    tel_bytes, _ = Encoder().encode(TEL, Framing.CONFLUENT)
    assert Decoder(ACK).decode(tel_bytes, None, INGEST).reason is ErrorReason.UNEXPECTED_SCHEMA
    assert Decoder(OUTPUT).decode(tel_bytes, None, INGEST).reason is ErrorReason.UNEXPECTED_SCHEMA


def test_headers_naming_an_unknown_schema() -> None:
    body = Encoder().encode(TEL, Framing.AVRO)[0]
    got = Decoder(TELEMETRY).decode(body, [("fg-schema", b"dev.fleetgate.device.Telemetry"),
                                           ("fg-schema-version", b"9")], INGEST)  # fmt: skip
    assert got.reason is ErrorReason.UNKNOWN_SCHEMA


def test_json_on_output_stream_needs_headers() -> None:
    assert Decoder(OUTPUT).decode(b'{"a": 1}', None, INGEST).reason is ErrorReason.UNKNOWN_SCHEMA


def test_firmware_version_recovered_for_dead_letters() -> None:
    got = Decoder(TELEMETRY).decode(_json(t=0, fw="2.9.3"), None, INGEST)
    assert got.reason is ErrorReason.TIMESTAMP_OUT_OF_RANGE and got.firmware_version == "2.9.3"
    got = Decoder(TELEMETRY).decode(_json(err=-5, fw="3.0.0"), None, INGEST)
    assert got.firmware_version == "3.0.0"


def test_confluent_and_single_object_frames() -> None:
    assert frame_confluent(258, b"x") == b"\x00\x00\x00\x01\x02x"
    assert frame_single_object(b"\x01" * 8, b"x") == b"\xc3\x01" + b"\x01" * 8 + b"x"
    with pytest.raises(ValueError):
        frame_confluent(1 << 32, b"")


def test_legacy_json_variants_from_the_field() -> None:
    dec = Decoder(TELEMETRY)
    t = INGEST // 1000
    r = dec.decode(b'\n  {"id":"d-1","t":%d,"fw":"2.1","temp":null,"unknown_key":[1,2]}' % t, None, INGEST)
    assert r.metrics == {} and r.errors == 0 and r.event_time_ms == t * 1000
    r = dec.decode(LEGACY, [("fg-schema", b"telemetry_legacy_json")], INGEST)
    assert r.metrics["battery_pct"] == 87.5


def test_batch_api_with_tuples_splits_records_and_errors() -> None:
    msgs = [
        (V2_SO, None, INGEST, "fleet.telemetry", 0, 1),
        (b"garbage!", [("h", b"1")], INGEST, "fleet.telemetry", 0, 2),
        (LEGACY, None, INGEST, "fleet.telemetry", 1, 3, b"key"),
        (V1_CF[:7], None, INGEST, "fleet.telemetry", 1, 4, b"key2"),
    ]
    records, errors = Decoder(TELEMETRY).decode_batch(msgs)
    assert [r.device_id for r in records] == ["dev-000042", "dev-000042"]
    assert [(e.reason, e.offset, e.key) for e in errors] == [
        (ErrorReason.UNKNOWN_FORMAT, 2, None),
        (ErrorReason.TRUNCATED_AVRO, 4, b"key2"),
    ]
    assert errors[0].headers == (("h", b"1"),)


def test_headers_as_dict_are_accepted() -> None:
    body, headers = Encoder().encode(TEL, Framing.AVRO)
    got = Decoder(TELEMETRY).decode(body, dict(headers), INGEST)
    assert not isinstance(got, DecodeError) and got.device_id == TEL.device_id
