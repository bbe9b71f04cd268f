"""The simulator's hand-written telemetry bytes equal the codecs' Encoder output, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gates.events import Telemetry
from streams.codecs import Decoder, Framing
from streams.simulator.wire import FMT_AVRO_V1, FMT_AVRO_V2, FMT_JSON, TelemetryWire, avro_long

WIRES = {f: TelemetryWire(f) for f in (Framing.SINGLE_OBJECT, Framing.CONFLUENT)}
tenths = st.integers(-2000, 2000).map(lambda v: v / 10)
maybe = st.none() | tenths


@settings(max_examples=300, deadline=None)
@given(
    framing=st.sampled_from(list(WIRES)),
    fmt=st.sampled_from([FMT_JSON, FMT_AVRO_V1, FMT_AVRO_V2]),
    did=st.from_regex(r"dev-[0-9]{7}", fullmatch=True),
    t_ms=st.integers(1_500_000_000_000, 2_000_000_000_000),
    fw=st.sampled_from(["4.1.0", "4.2.0-rc.1"]),
    cfg=st.sampled_from(["cfg-41", "cfg-42"]),
    uptime=st.integers(0, 1 << 40),
    rc=st.integers(0, 255),
    err=st.integers(0, 1000),
    boot=st.integers(0, 1),
    lat=st.none() | st.floats(0, 1e5, allow_nan=False, width=32),
    temp=tenths,
    cpu=tenths,
    bat=maybe,
    mem=maybe,
    rssi=maybe,
)
def test_fast_encoding_equals_encoder(framing, fmt, did, t_ms, fw, cfg, uptime, rc, err, boot, lat, temp, cpu, bat, mem, rssi):  # fmt: skip
    wire = WIRES[framing]
    values = (did, t_ms, fw, "gw-100", cfg, uptime, rc, err, boot, lat, temp, cpu, bat, mem, rssi)
    expected, headers = wire.reference(fmt, *values)
    assert wire.encode(fmt, *values) == expected
    assert wire.encode(fmt, "", *values[1:], did.encode()) == expected
    assert wire.headers[fmt] == headers
    rec = Decoder.telemetry().decode(expected, headers, t_ms)
    assert isinstance(rec, Telemetry) and rec.firmware_version == fw


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, 64, 8191, 8192, 1 << 20, -(1 << 20), 1 << 27, 1 << 40, -(1 << 62)]
)
def test_avro_long_matches_fastavro(n: int) -> None:
    from io import BytesIO

    from fastavro import schemaless_writer

    buf = BytesIO()
    schemaless_writer(buf, "long", n)
    assert avro_long(n) == buf.getvalue()
