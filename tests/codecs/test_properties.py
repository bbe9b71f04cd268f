"""Property tests: whatever bytes arrive, the decoder returns a record or a DecodeError.

Random bytes, random bytes behind valid framing headers, and mutations (bit flips,
truncation, insertion, splicing) of every golden vector, with random fg-* headers, on
every stream kind.  Hypothesis' deadline turns a hang into a failure.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gates.events import Ack, CohortHealth, Decision, DeviceCommand, RolloutPlan, Telemetry
from streams.codecs import ACK, DEVICE, OUTPUT, TELEMETRY, DeadLetter, DecodeError, Decoder, default_catalogue
from tests.codecs.golden_cases import GOLDEN_DIR, INGEST

DECODERS = [Decoder(k) for k in (TELEMETRY, ACK, DEVICE, OUTPUT)]
RECORD_TYPES = (Telemetry, Ack, Decision, CohortHealth, DeviceCommand, RolloutPlan, DeadLetter, DecodeError)
VALID = [p.read_bytes() for p in sorted(GOLDEN_DIR.glob("*.bin"))]
CAT = default_catalogue()
PREFIXES = [b"\x00" + (e.local_id or 0).to_bytes(4, "big") for e in CAT.entries if e.local_id] + [
    b"\xc3\x01" + e.fingerprint for e in CAT.entries
]
SETTINGS = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

header_values = st.sampled_from(
    [b"dev.fleetgate.device.Telemetry", b"telemetry", b"ack", b"decision", b"1", b"2", b"99", b"x", b"\xff",
     b"json", b"avro", b"confluent", b"single-object", b"telemetry_legacy_json"]
)  # fmt: skip
headers = st.none() | st.lists(
    st.tuples(
        st.sampled_from(["fg-schema", "fg-schema-version", "fg-format", "other"]), st.none() | header_values
    ),
    max_size=4,
)


def _check(value: bytes, hdrs: Any) -> None:
    for dec in DECODERS:
        r = dec.decode(value, hdrs, INGEST, "t", 0, 1)
        assert isinstance(r, RECORD_TYPES), type(r)
        if isinstance(r, DecodeError):
            assert r.value == value and r.reason.value  # raw bytes kept, stable code
        records, errors = dec.decode_batch([(value, hdrs, INGEST, "t", 0, 1)])
        assert len(records) + len(errors) == 1


@SETTINGS
@given(st.binary(max_size=300), headers)
def test_random_bytes(value: bytes, hdrs: Any) -> None:
    _check(value, hdrs)


@SETTINGS
@given(st.sampled_from(PREFIXES), st.binary(max_size=200), headers)
def test_random_bodies_behind_valid_frames(prefix: bytes, body: bytes, hdrs: Any) -> None:
    _check(prefix + body, hdrs)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    b = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and b:
            b[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x22, 0x7B]))
        elif op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and b:
            del b[i]
        elif op == "splice":
            other = draw(st.sampled_from(VALID))
            b[i:] = other[draw(st.integers(0, len(other))) :]
    return bytes(b)


@SETTINGS
@given(mutated(), headers)
def test_mutations_of_valid_payloads(value: bytes, hdrs: Any) -> None:
    _check(value, hdrs)


@SETTINGS
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
        max_leaves=20,
    ).map(lambda x: {"id": "d", "t": INGEST // 1000, "fw": "1", "temp": x, "junk": x}),
)
def test_arbitrary_json_values(obj: dict) -> None:
    import json

    _check(json.dumps(obj).encode(), None)
