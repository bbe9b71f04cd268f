"""The native batch decoder (``native/``, ``streams/codecs/native.py``) never changes what
``Decoder.decode_batch`` returns.

Differential: every batch goes through a decoder on the native path and one on the pure
Python path (the reference); records and dead letters must be equal, in order, field by
field.  Payloads: the golden vectors (with and without their headers), random valid records
of every device schema version in every framing, legacy JSON, device commands, and
mutations of all of them; plus ``confluent_kafka.Message`` objects, consumer errors and odd
header shapes.  Other tests check that the native side really reads the common payloads
(nothing handed back) and that it can be switched off.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from io import BytesIO
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codecs import ACK, DEVICE, OUTPUT, TELEMETRY, DecodeLimits, Decoder, Encoder, Framing
from streams.codecs import native as native_bridge
from tests.codecs.golden_cases import GOLDEN_DIR, INGEST, cases
from tests.codecs.test_fastread import CAT, RECORDS, _same, encoded, legacy_objects, texts

if native_bridge.native_module() is None:
    pytest.skip(f"native decoder off: not built or {native_bridge.ENV}=0 ({native_bridge.HOW_TO_ENABLE})",
                allow_module_level=True)  # fmt: skip

KINDS = (TELEMETRY, ACK, DEVICE, OUTPUT)
NAT = [Decoder(k, native=True) for k in KINDS]
REF = [Decoder(k, native=False) for k in KINDS]
HEADERS = json.loads((GOLDEN_DIR / "headers.json").read_text())
_N = {"telemetry": 0, "ack": 1, "output": 3}
# each example decodes a few messages on 4 stream kinds x 2 paths; the 10^5-message fuzz
# (test_native_fuzz.py) covers volume
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(msgs: list[Any], kinds: range | tuple[int, ...] = range(len(KINDS))) -> None:
    for i in kinds:
        got = NAT[i].decode_batch(msgs)
        want = REF[i].decode_batch(msgs)
        assert _same(list(got[0]), list(want[0])), (KINDS[i].name, got[0], want[0])
        assert _same(list(got[1]), list(want[1])), (KINDS[i].name, got[1], want[1])


def _msg(value: bytes, headers: Any = None, ts: int = INGEST, offset: int = 7) -> tuple[Any, ...]:
    return (value, headers, ts, "t", 3, offset)


def _frames(subject: str, version: int, body: bytes) -> list[tuple[bytes, Any]]:
    """(value, headers) in Confluent, single-object and bare framing."""
    e = CAT.get(subject, version)
    assert e.local_id is not None
    bare = [("fg-schema", e.full_name.encode()), ("fg-schema-version", str(version).encode())]
    return [
        (b"\x00" + e.local_id.to_bytes(4, "big") + body, None),
        (b"\xc3\x01" + e.fingerprint + body, None),
        (body, bare),
        (body, [*bare, ("fg-format", b"avro")]),
    ]


def _mutate(body: bytes, data: st.DataObject) -> bytes:
    b = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "append"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and b:
            b[i] = data.draw(
                st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x22, 0x5C, 0x7B, 0x7D, 0x80, 0xFF, 0xC3])
            )
        elif op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=10))
        elif op == "delete" and b:
            del b[i]
        elif op == "append":
            b += data.draw(st.binary(min_size=1, max_size=3))
    return bytes(b)


# ---------------------------------------------------------------- the native path is used


def test_native_path_is_active_and_reads_the_common_payloads() -> None:
    enc = Encoder()
    msgs = []
    for c in cases():
        if c.kind == "telemetry" or (c.kind == "ack" and c.framing is not Framing.JSON):
            value, headers = enc.encode(c.record, c.framing, version=c.version)
            msgs.append((c.kind, _msg(value, headers)))
    for kind, i in (("telemetry", 0), ("ack", 1)):
        batch = [m for k, m in msgs if k == kind]
        records, back = NAT[i]._native._native.decode(batch)
        assert back is None and len(records) == len(batch), (kind, back)
        assert records == REF[i].decode_batch(batch)[0]


def test_env_switch_turns_the_native_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native_bridge.ENV, "0")
    assert Decoder(TELEMETRY)._native is None
    with pytest.raises(ImportError, match="make venv"):
        Decoder(TELEMETRY, native=True)
    monkeypatch.setenv(native_bridge.ENV, "1")
    assert Decoder(TELEMETRY)._native is not None


def test_missing_module_gives_one_notice_and_pure_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fleetgate_native", None)  # import fails
    monkeypatch.setattr(native_bridge, "_module", False)
    with caplog.at_level(logging.WARNING, logger=native_bridge.__name__):
        assert Decoder(TELEMETRY)._native is None
        assert Decoder(ACK)._native is None
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "make venv" in notices[0], notices


def test_unusual_decoder_configurations_stay_in_python() -> None:
    # limits beyond 64 bits cannot be passed to the native side: pure Python, same results
    d = Decoder(TELEMETRY, limits=DecodeLimits(max_future_skew_ms=1 << 70))
    assert d._native is None
    # a stream kind with other builders: its schemas get no native target
    k = dataclasses.replace(TELEMETRY, builders={})
    assert Decoder(k)._native._index == {}


# ---------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_golden_vectors_decode_identically(case: Any) -> None:
    value = (GOLDEN_DIR / f"{case.name}.bin").read_bytes()
    hdrs = [(k, v.encode()) for k, v in HEADERS[case.name].items()]
    _check([_msg(value, hdrs), _msg(value), _msg(value, tuple(hdrs)), _msg(value, [])])
    got = NAT[_N[case.kind]].decode_batch([_msg(value, hdrs)])
    assert got[0] == [case.expected] and not got[1]


# ---------------------------------------------------------------- random and mutated records


@SETTINGS
@given(encoded())
def test_valid_records_decode_identically(case: tuple[str, int, bytes]) -> None:
    subject, version, body = case
    _check([_msg(v, h) for v, h in _frames(subject, version, body)])


@SETTINGS
@given(encoded(), st.data())
def test_mutated_records_decode_identically(case: tuple[str, int, bytes], data: st.DataObject) -> None:
    subject, version, body = case
    mutated = _mutate(body, data)
    framed = [
        _msg(_mutate(v, data) if data.draw(st.booleans()) else v, h)
        for v, h in _frames(subject, version, body)
    ]
    _check([_msg(v, h) for v, h in _frames(subject, version, mutated)] + framed)


commands = st.fixed_dictionaries(
    {"command_id": texts, "device_id": texts, "rollout_id": texts, "stage": st.integers(-(2**31), 2**31 - 1),
     "kind": st.sampled_from(["UPDATE", "ROLLBACK"]), "target_kind": st.sampled_from(["FIRMWARE", "CONFIG"]),
     "target_version": texts, "issued_at_ms": st.integers(-(2**63), 2**63 - 1)}
)  # fmt: skip


@SETTINGS
@given(commands, st.data())
def test_device_commands_decode_identically(cmd: dict[str, Any], data: st.DataObject) -> None:
    out = BytesIO()
    schemaless_writer(out, CAT.get("device_command", 1).parsed, cmd)
    body = out.getvalue()
    frames = _frames("device_command", 1, body)
    _check(
        [_msg(v, h) for v, h in frames]
        + [_msg(v, h) for v, h in _frames("device_command", 1, _mutate(body, data))]
    )
    records, back = NAT[3]._native._native.decode([_msg(v, h) for v, h in frames])
    # only the bare body without fg-format may go back (one starting 0x00 looks Confluent-framed),
    # unless a long needs a 10-byte varint (fastavro's job)
    if -(2**62) <= cmd["issued_at_ms"] < 2**62:
        assert back is None or back == [(2, 2)], back


def _json_text(obj: dict[str, Any], data: st.DataObject) -> bytes | None:
    try:
        return json.dumps(obj, indent=data.draw(st.sampled_from([None, 0, 1]))).encode()
    except (ValueError, OverflowError):
        return None


@SETTINGS
@given(legacy_objects, st.data())
def test_legacy_json_decodes_identically(obj: dict[str, Any], data: st.DataObject) -> None:
    text = _json_text(obj, data)
    if text is None:
        return
    legacy = [("fg-schema", b"dev.fleetgate.device.legacy.LegacyJsonTelemetry")]
    msgs = [_msg(text), _msg(text, legacy), _msg(text, [("fg-format", b"json")]), _msg(_mutate(text, data))]
    try:
        want = [r.decode_batch(msgs) for r in REF]
    except OverflowError:  # a huge JSON integer as a metric: the Python generic path raises (kept as is)
        return
    for i, nat in enumerate(NAT):
        got = nat.decode_batch(msgs)
        assert _same(got[0], want[i][0]) and _same(got[1], want[i][1]), (KINDS[i].name, got, want[i])


@pytest.mark.parametrize(
    "text",
    [b'{"id":"d","t":1700000000,"fw":"1","temp":1e400}', b'{"id":"d","t":1700000000,"fw":"1","cpu":-0}',
     b'{"id":"d","t":1700000000,"fw":"1","temp":1.}', b'{"id":"d","t":1700000000,"fw":"1","temp":01}',
     b'{"id":"d","t":1700000000,"fw":"1","temp":1e5,"t":1700000001}', b'{"id":"d\\u0041","t":1700000000,"fw":"1"}',
     b'{"id":"d","t":1700000000,"fw":"1","x":{"y":[1]}}', b'{"id":"d","t":1700000000,"fw":"1","temp":NaN}',
     b'{"id":"d","t":1700000000,"fw":"1"} ', b'{"id":"d","t":1700000000,"fw":"1",}', b'{"id":"\xff","t":1,"fw":"1"}',
     b'{"id":"d","t":1700000000.0,"fw":"1"}', b'{"id":"d","t":1700000000,"fw":"1","err":-1}',
     b'{"id":"d","t":1700000000,"fw":"1","temp":' + b"9" * 400 + b"}", b'{"id":"d","t":1700000000,"fw":"1","temp":-}',
     b'{"id":"d","t":1700000000,"fw":"1","boot":1}', b'{ "id" : "d" , "t" : 1700000000 , "fw" : "1" }', b"{}"],
)  # fmt: skip
def test_json_edge_cases_decode_identically(text: bytes) -> None:
    _check([_msg(text)], (0, 2))


# ---------------------------------------------------------------- messages, headers, order


def _valid(subject: str, version: int) -> bytes:
    e = CAT.get(subject, version)
    rec = {"device_id": "dev-1", "ts": INGEST // 1000, "firmware": "4.2.0", "temperature_c": 40.0, "cpu_pct": 1.0,
           "error_count": 0, "status": "ok", "version": "4.3.0"}  # fmt: skip
    rec = {k: v for k, v in rec.items() if k in {f["name"] for f in e.raw["fields"]}}
    if version == 2:
        rec.update({f["name"]: f["default"] for f in e.raw["fields"] if f["name"] not in rec})
    out = BytesIO()
    schemaless_writer(out, e.parsed, rec)
    assert e.local_id is not None
    return b"\x00" + e.local_id.to_bytes(4, "big") + out.getvalue()


def test_confluent_messages_errors_and_order() -> None:
    good = [_valid(s, v) for s, v in RECORDS]
    eof = Message(value=None, error=KafkaError(KafkaError._PARTITION_EOF), topic="t", partition=0, offset=9)
    failed = Message(value=None, error=KafkaError(KafkaError._TRANSPORT), topic="t", partition=1, offset=3)
    msgs: list[Any] = []
    for i, v in enumerate(good * 3):
        msgs.append(
            Message(
                value=v, headers=[("x", b"y")], timestamp=(1, INGEST), topic="t", partition=i % 3, offset=i
            )
        )
        if i % 4 == 1:
            msgs.append(
                Message(value=b"\x00\x00\x00\x00\x66\x02", timestamp=(1, INGEST), topic="t", offset=100 + i)
            )
        if i % 5 == 2:
            msgs += [eof, failed, _msg(b"", None), _msg(v[:-1]), _msg(v, None, INGEST + 10**12)]
        msgs.append(_msg(b'{"id":"d","t":%d,"fw":"1"}' % (INGEST // 1000), None, INGEST, i))
    _check(msgs)
    _check(tuple(msgs))
    for i in range(len(KINDS)):  # any iterable
        assert _same(NAT[i].decode_batch(iter(msgs)), REF[i].decode_batch(msgs))


odd_headers = st.sampled_from([
    None, [], (), {}, {"fg-format": b"avro"}, [("fg-schema", None)], [("fg-schema-version", b"2")],
    [("fg-format", b"json")], [("fg-format", b"confluent")], [("fg-format", b"single-object")],
    [("fg-format", "avro"), ("fg-schema", "dev.fleetgate.device.Telemetry"), ("fg-schema-version", " 2 ")],
    [("fg-schema", b"dev.fleetgate.device.Ack"), ("fg-schema-version", b"\xff")], [("fg-format", b"bogus")],
    [["fg-format", b"json"]], [(b"fg-format", b"json")], [("fg-format", bytearray(b"json"))], [("a", 1)],
    [("fg-schema", b"dev.fleetgate.device.Telemetry"), ("fg-schema-version", b"1"), ("fg-schema", None)],
    [("fg-schema", b"dev.fleetgate.control.DeviceCommand"), ("fg-schema-version", b"1")],
    [("fg-schema", b"dev.fleetgate.device.legacy.LegacyJsonTelemetry"), ("fg-schema-version", b"1")],
    [("fg-schema", "dev.fleetgate.device.Telemetry\udc80")], [("fg-schema", b"nope"), ("fg-schema-version", b"x")],
])  # fmt: skip


@SETTINGS
@given(encoded(), odd_headers, st.sampled_from([INGEST, -1, 0, 2**63, True, None, 1.5]))
def test_header_shapes_and_timestamps_decode_identically(
    case: tuple[str, int, bytes], headers: Any, ts: Any
) -> None:
    subject, version, body = case
    values = [v for v, _ in _frames(subject, version, body)][:3] + [b'{"id":"d","t":1700000000,"fw":"1"}']
    msgs = [_msg(v, headers, ts) for v in values]
    for nat, ref in zip(NAT, REF, strict=True):
        try:
            want = ref.decode_batch(msgs)
        except Exception as exc:  # the reference raises on some odd inputs (ts=None): the native path alike
            with pytest.raises(type(exc)):
                nat.decode_batch(msgs)
            continue
        got = nat.decode_batch(msgs)
        assert _same(got[0], want[0]) and _same(got[1], want[1]), (ref.kind.name, got, want)


@pytest.mark.parametrize("device_id", ["dev-1", "d" * 16])  # body starts with 0x0a / 0x20: JSON whitespace
def test_bare_bodies_starting_with_json_whitespace_are_read_natively(device_id: str) -> None:
    tel = {"device_id": device_id, "ts": INGEST // 1000, "firmware": "4.2.0", "temperature_c": 1.0, "cpu_pct": 2.0,
           "error_count": 0}  # fmt: skip
    out = BytesIO()
    schemaless_writer(out, CAT.get("telemetry", 1).parsed, tel)
    headers = [("fg-schema", b"dev.fleetgate.device.Telemetry"), ("fg-schema-version", b"1")]
    msgs = [_msg(out.getvalue(), headers)]
    records, back = NAT[0]._native._native.decode(msgs)
    assert back is None and records == REF[0].decode_batch(msgs)[0] and len(records) == 1


def test_a_decoder_built_in_one_thread_decodes_in_another() -> None:
    """Workers build their decoders, then decode in the ingest thread."""
    import threading

    msgs = [_msg(_valid("telemetry", 2))] * 3
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(NAT[0].decode_batch(msgs)))
    t.start()
    t.join(60)
    assert out == [REF[0].decode_batch(msgs)] and len(out[0][0]) == 3
