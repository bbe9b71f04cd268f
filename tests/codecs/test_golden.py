"""Golden byte vectors: today's encoders must write exactly the committed bytes, and
today's decoders must read every committed generation into the same canonical record."""

from __future__ import annotations

import json

import pytest

from streams.codecs import ACK, OUTPUT, TELEMETRY, Decoder, Encoder, Framing
from tests.codecs.golden_cases import GOLDEN_DIR, INGEST, Case, cases

CASES = cases()
HEADERS = json.loads((GOLDEN_DIR / "headers.json").read_text())
KINDS = {"telemetry": TELEMETRY, "ack": ACK, "output": OUTPUT}


def _headers(case: Case) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in HEADERS[case.name].items()]


def test_every_golden_file_has_a_case() -> None:
    on_disk = {p.stem for p in GOLDEN_DIR.glob("*.bin")}
    assert on_disk == {c.name for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_encoding_is_byte_identical(case: Case) -> None:
    value, headers = Encoder().encode(case.record, case.framing, version=case.version)
    assert value == (GOLDEN_DIR / f"{case.name}.bin").read_bytes()
    assert {k: v.decode() for k, v in headers} == HEADERS[case.name]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden_bytes_decode_to_canonical_record(case: Case) -> None:
    value = (GOLDEN_DIR / f"{case.name}.bin").read_bytes()
    got = Decoder(KINDS[case.kind]).decode(value, _headers(case), INGEST, "t", 0, 7)
    assert got == case.expected


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.framing is not Framing.AVRO and c.kind != "output"], ids=lambda c: c.name
)
def test_device_payloads_decode_without_headers(case: Case) -> None:
    """Devices send no fg-* headers: framing bytes alone must identify the schema."""
    value = (GOLDEN_DIR / f"{case.name}.bin").read_bytes()
    assert Decoder(KINDS[case.kind]).decode(value, None, INGEST) == case.expected


def test_bare_avro_without_headers_is_a_decode_error_not_a_guess() -> None:
    value = (GOLDEN_DIR / "telemetry_v2_avro.bin").read_bytes()
    err = Decoder(TELEMETRY).decode(value, None, INGEST)
    assert err.__class__.__name__ == "DecodeError"
    assert err.value == value


def test_single_object_header_is_c3_01_plus_le_fingerprint() -> None:
    from streams.codecs import crc64_avro, default_catalogue

    entry = default_catalogue().get("telemetry", 2)
    value = (GOLDEN_DIR / "telemetry_v2_single_object.bin").read_bytes()
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == crc64_avro(entry.canonical.encode()).to_bytes(8, "little") == entry.fingerprint


def test_confluent_header_is_magic_zero_plus_be_local_id() -> None:
    value = (GOLDEN_DIR / "ack_v2_confluent.bin").read_bytes()
    assert value[0] == 0 and int.from_bytes(value[1:5], "big") == 202


def test_crc64_avro_matches_spec_vector() -> None:
    from streams.codecs import crc64_avro

    # Avro spec test vector: fingerprint of the schema "null" is 7195948357588979594 (signed long)
    assert crc64_avro(b'"null"') == 7195948357588979594
