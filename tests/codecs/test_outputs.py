"""Our output contracts: every framing round-trips, and every record carries routing headers."""

from __future__ import annotations

import json

import pytest

from streams.codecs import H_ACTION, H_DECISION_ID, H_REASON, OUTPUT, DeadLetter, Decoder, Encoder, Framing
from streams.codecs.errors import CodecError
from tests.codecs.golden_cases import (
    COMMAND,
    DEAD,
    DEAD_ERROR,
    DECISION,
    HEALTH,
    OPERATOR_DECISION,
    PLAN,
    SLICE_DECISION,
)

RECORDS = [DECISION, OPERATOR_DECISION, SLICE_DECISION, HEALTH, COMMAND, PLAN, DEAD]


# the schema version encoders write: 1, but decision.v2 for a decision scoped to a slice (a stage
# decision stays v1, which executors without decision.v2 read)
def written_version(record: object) -> bytes:
    return b"2" if getattr(record, "slice", None) is not None else b"1"


FRAMINGS = [Framing.SINGLE_OBJECT, Framing.CONFLUENT, Framing.JSON, Framing.AVRO]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip(record: object, framing: Framing) -> None:
    value, headers = Encoder().encode(record, framing)
    hdr = dict(headers)
    want = written_version(record)
    assert hdr["fg-format"] == framing.value.encode() and hdr["fg-schema-version"] == want
    assert Decoder(OUTPUT).decode(value, headers) == record


def test_decision_headers_let_a_router_filter_without_decoding() -> None:
    _, headers = Encoder().encode(DECISION)
    assert dict(headers) == {
        "fg-schema": b"dev.fleetgate.control.Decision",
        "fg-schema-version": b"1",
        "fg-format": b"single-object",
        "fg-rollout-id": b"ro-7",
        H_DECISION_ID: DECISION.decision_id.encode(),
        H_ACTION: b"PAUSE",
    }


def test_decode_error_is_written_as_its_dead_letter() -> None:
    a = Encoder().encode(DEAD_ERROR)
    assert a == Encoder().encode(DEAD)
    assert dict(a[1])[H_REASON] == b"truncated_avro"
    back = Decoder(OUTPUT).decode(*a)
    assert (
        isinstance(back, DeadLetter) and back.value == DEAD_ERROR.value and back.headers == DEAD_ERROR.headers
    )


def test_json_output_is_plain_json_for_simple_consumers() -> None:
    value, _ = Encoder().encode(DEAD, Framing.JSON)
    obj = json.loads(value)
    assert obj["reason"] == "truncated_avro" and obj["partition"] == 3
    import base64

    assert base64.b64decode(obj["value"]) == DEAD.value


def test_signature_fields_reserved_for_issue_8() -> None:
    value, _ = Encoder().encode(DECISION, Framing.JSON, signature=b"\x01\x02", key_id="k1")
    obj = json.loads(value)
    assert obj["signature"] == "AQI=" and obj["key_id"] == "k1"


def test_a_slice_decision_is_never_written_as_v1() -> None:
    """decision.v1 has no slice: the record would read as a stop of the whole stage."""
    with pytest.raises(CodecError, match="decision.v2"):
        Encoder().encode(SLICE_DECISION, version=1)
    value, headers = Encoder().encode(DECISION, version=1)  # a stage decision still can be
    assert dict(headers)["fg-schema-version"] == b"1" and Decoder(OUTPUT).decode(value, headers) == DECISION


def test_unknown_record_type_is_a_bug() -> None:
    with pytest.raises(CodecError):
        Encoder().encode(object())
