"""Avro schema resolution: v1 data read as v2, enum defaults, and the decoder's fast path."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from gates.events import AckStatus, SourceFormat
from streams.codecs import ACK, TELEMETRY, Decoder, SchemaCatalogue, default_catalogue, frame_single_object
from streams.codecs.catalogue import SCHEMA_DIR
from streams.codecs.mapping import (
    ACK_SELF_DEFAULTS,
    FAST_TELEMETRY,
    TELEMETRY_SELF_DEFAULTS,
    ack_status_from_text,
    telemetry_from_avro,
)
from tests.codecs.golden_cases import INGEST

CAT = default_catalogue()
T1, T2 = CAT.get("telemetry", 1), CAT.get("telemetry", 2)
A1, A2 = CAT.get("ack", 1), CAT.get("ack", 2)

f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
v1_telemetry = st.fixed_dictionaries(
    {
        "device_id": st.text(min_size=1, max_size=20),
        "ts": st.integers(1_500_000_000, 2_000_000_000),
        "firmware": st.text(max_size=10),
        "temperature_c": f32,
        "cpu_pct": f32,
        "error_count": st.integers(0, 2**31 - 1),
    }
)


def _avro(entry, rec: dict) -> bytes:  # type: ignore[no-untyped-def]
    buf = BytesIO()
    schemaless_writer(buf, entry.parsed, rec)
    return buf.getvalue()


@settings(max_examples=200, deadline=None)
@given(v1_telemetry)
def test_v1_read_with_v2_reader_schema_matches_decoder(rec: dict) -> None:
    body = _avro(T1, rec)
    resolved = schemaless_reader(BytesIO(body), T1.parsed, T2.parsed)  # fastavro's own resolution
    assert resolved["event_time_ms"] is None and resolved["extra_metrics"] == {}
    expected = telemetry_from_avro(resolved, SourceFormat.AVRO_V1, rec["ts"] * 1000)
    got = Decoder(TELEMETRY).decode(frame_single_object(T1.fingerprint, body), None, rec["ts"] * 1000)
    assert got == expected
    assert got.event_time_ms == rec["ts"] * 1000  # seconds -> ms
    assert got.source_format is SourceFormat.AVRO_V1
    assert set(got.metrics) == {"temperature_c", "cpu_pct"}  # present metrics only


def test_self_defaults_equal_the_v2_schema_defaults() -> None:
    """The mappers' own defaults for absent fields must be the reader schema's defaults."""
    for entry, mine in ((T2, TELEMETRY_SELF_DEFAULTS), (A2, ACK_SELF_DEFAULTS)):
        v1_names = set(CAT.get(entry.subject, 1).field_names)
        schema_defaults = {
            f["name"]: f["default"] for f in entry.parsed["fields"] if f["name"] not in v1_names
        }
        assert dict(mine) == schema_defaults


def test_fast_telemetry_construction_is_active_and_identical() -> None:
    assert FAST_TELEMETRY, "gates.events.Telemetry changed: update mapping._TELEMETRY_FIELDS"
    d = schemaless_reader(
        BytesIO(_avro(T1, {"device_id": "d", "ts": 1, "firmware": "f", "temperature_c": 1.0,
                           "cpu_pct": 2.0, "error_count": 3})), T1.parsed, T2.parsed)  # fmt: skip
    from gates.events import Telemetry

    fast = telemetry_from_avro(d, SourceFormat.AVRO_V1, 9)
    slow = Telemetry(
        "d", 1000, 9, "f", SourceFormat.AVRO_V1, errors=3, metrics={"temperature_c": 1.0, "cpu_pct": 2.0}
    )
    assert fast == slow and hash(fast.device_id) == hash(slow.device_id) and repr(fast) == repr(slow)


def test_ack_v1_status_strings_map_to_canonical_status() -> None:
    dec = Decoder(ACK)
    ts = INGEST // 1000
    for text, status in [
        ("applied", AckStatus.APPLIED),
        ("OK", AckStatus.APPLIED),
        ("Rolled-Back", AckStatus.ROLLED_BACK),
        ("timeout", AckStatus.TIMED_OUT),
        ("error", AckStatus.FAILED),
        ("flux-capacitor-charging", AckStatus.UNKNOWN),
    ]:
        body = _avro(A1, {"device_id": "d", "ts": ts, "status": text, "version": "4.3.0"})
        got = dec.decode(frame_single_object(A1.fingerprint, body), None, INGEST)
        assert got.status is status, text
        assert ack_status_from_text(text) is status


def test_ack_v3_with_new_enum_symbol_reads_as_unknown_then_status_text(tmp_path: Path) -> None:
    """A later firmware adds an enum symbol: the v2 reader's enum default absorbs it."""
    for p in SCHEMA_DIR.glob("*.avsc"):
        (tmp_path / p.name).write_text(p.read_text())
    v3 = json.loads(A2.text)
    v3["fleetgate.local_id"] = 203
    v3["fields"][5]["type"]["symbols"].append("PAUSED_BY_USER")
    (tmp_path / "ack.v3.avsc").write_text(json.dumps(v3))
    cat3 = SchemaCatalogue.load(tmp_path)
    a3 = cat3.get("ack", 3)
    rec = {"device_id": "d", "ts": INGEST // 1000, "status": "paused_by_user", "version": "4.3.0",
           "event_time_ms": INGEST, "state": "PAUSED_BY_USER", "error_code": None, "attempt": 1,
           "rollout_id": "ro", "command_id": None}  # fmt: skip
    body = _avro(a3, rec)
    # the v2 reader (today's schemas/) resolves the v3 writer: unknown symbol -> enum default UNKNOWN
    resolved = schemaless_reader(BytesIO(body), a3.parsed, A2.parsed)
    assert resolved["state"] == "UNKNOWN"
    # and the v3 catalogue's decoder (reader = v3) keeps it, then maps the status text (unknown)
    got = Decoder(ACK, catalogue=cat3).decode(frame_single_object(a3.fingerprint, body), None, INGEST)
    assert got.status is AckStatus.UNKNOWN and got.rollout_id == "ro"


def test_v2_written_telemetry_is_readable_by_a_v1_reader() -> None:
    rec = telemetry_to_v2_example()
    body = _avro(T2, rec)
    old = schemaless_reader(BytesIO(body), T2.parsed, T1.parsed)
    assert old == {k: rec[k] for k in T1.field_names}


def telemetry_to_v2_example() -> dict:
    from streams.codecs.mapping import telemetry_to_avro
    from tests.codecs.golden_cases import TELEMETRY as TEL

    return telemetry_to_avro(TEL, 2)


def test_decision_v1_and_v2_readers_read_each_other() -> None:
    """decision.v2 adds only the optional slice: a v1 reader reads a v2 record (the slice
    ignored), a v2 reader reads a v1 record (slice null), by fastavro's schema resolution."""
    from dataclasses import replace

    from gates.events import Decision
    from streams.codecs import OUTPUT, Framing
    from streams.codecs.encoder import Encoder
    from streams.codecs.records import decision_from_dict, decision_to_dict
    from tests.codecs.golden_cases import DECISION, SLICE_DECISION

    d1, d2 = CAT.get("decision", 1), CAT.get("decision", 2)

    def body(entry: object, d: Decision) -> bytes:
        buf = BytesIO()
        schemaless_writer(buf, entry.parsed, decision_to_dict(d))  # type: ignore[attr-defined]
        return buf.getvalue()

    old = schemaless_reader(BytesIO(body(d2, SLICE_DECISION)), d2.parsed, d1.parsed)
    assert "slice" not in old and decision_from_dict(old) == replace(SLICE_DECISION, slice=None)
    new = schemaless_reader(BytesIO(body(d1, DECISION)), d1.parsed, d2.parsed)
    assert new["slice"] is None and decision_from_dict(new) == DECISION
    # and the decoder, which reads every writer version with the latest reader
    value, headers = Encoder().encode(DECISION, Framing.SINGLE_OBJECT, version=1)
    assert Decoder(OUTPUT).decode(value, headers) == DECISION


def test_an_executor_without_decision_v2_never_obeys_a_slice_decision_as_something_else(
    tmp_path: Path,
) -> None:
    """Pins docs/executor.md's compatibility note.  Stage decisions are written as decision.v1,
    so an old reader (without decision.v2 in its catalogue) reads them as before; it cannot decode
    a slice decision (local ids, fingerprints, headers), and through a registry (writer v2
    resolved to reader v1) it reads one without its slice, and then the signature, which covers
    the slice, does not verify."""
    from dataclasses import replace

    from streams.codecs import OUTPUT, Encoder, Framing
    from streams.codecs.records import decision_from_dict, decision_to_dict
    from streams.security import Rejection, parse_verify_keys, sign_decision, verify_decision
    from tests.codecs.golden_cases import DECISION, SLICE_DECISION
    from tests.security.keys import private, verify_env

    for p in Path(str(SCHEMA_DIR)).glob("*.avsc"):
        if p.name != "decision.v2.avsc":
            (tmp_path / p.name).write_text(p.read_text())
    old = Decoder(OUTPUT, catalogue=SchemaCatalogue.load(tmp_path))
    for framing in Framing:
        assert old.decode(*Encoder().encode(DECISION, framing)) == DECISION
        got = old.decode(*Encoder().encode(SLICE_DECISION, framing))
        assert type(got).__name__ == "DecodeError", (framing, got)

    sig, kid = sign_decision(SLICE_DECISION, private("g1", "gate"), 1_700_000_320_000)
    buf = BytesIO()
    schemaless_writer(buf, CAT.get("decision", 2).parsed, decision_to_dict(SLICE_DECISION, sig, kid))
    read = schemaless_reader(
        BytesIO(buf.getvalue()), CAT.get("decision", 2).parsed, CAT.get("decision", 1).parsed
    )
    as_old = decision_from_dict(read)
    assert as_old == replace(SLICE_DECISION, slice=None, signature=sig, key_id=kid)
    keys = parse_verify_keys(verify_env(("g1", "gate"))["FLEETGATE_VERIFY_KEYS"])
    assert verify_decision(as_old, keys, 1_700_000_320_000, 60_000).rejection is Rejection.BAD_SIGNATURE
