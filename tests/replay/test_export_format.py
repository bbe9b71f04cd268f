"""Export files: format 2 (by column) holds exactly what format 1 held, and old files still read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gates.events import DeviceAttributes
from streams.replay.capture import Capture
from streams.replay.export import CHUNK, read_export, write_export, write_export_v1
from streams.replay.timerange import TimeRange

P = "x."


def _capture() -> tuple[Capture, dict[str, DeviceAttributes]]:
    cap = Capture(P, TimeRange(1_000, 900_000))
    h1 = [("fg-schema", b"dev.fleetgate.device.Telemetry"), ("fg-schema-version", b"2")]
    h2 = [("other", None), ("fg-format", b"json")]
    for part in (0, 3):
        cap.inputs[("telemetry", part)] = [
            (b"v%d" % i if i % 7 else None, (h1, h2, None, [])[i % 4], 1_000 + 7 * i, P + "telemetry", part,
             100 + i, b"dev-%d" % i if i % 5 else None)
            for i in range(CHUNK + 123)
        ]  # fmt: skip
    cap.inputs[("acks", 1)] = [(b"\x00\x01", h1, 5_000, P + "acks", 1, 0, b"dev-1")]
    cap.plans = [
        (b"plan", h1, 500, P + "rollouts", 0, 0, b"r1"),
        (b"p2", None, 899_999, P + "rollouts", 0, 1, b"r"),
    ]
    cap.control = [(b"dec", h2, 2_000, P + "rollout-control", 2, 9, None)]
    inv = {f"dev-{i}": DeviceAttributes(f"dev-{i}", model="m", region="eu") for i in range(30)}
    return cap, inv


def _norm(msgs: list[Any]) -> list[tuple[Any, ...]]:
    return [(v, tuple(h or ()), ts, t, p, o, k) for v, h, ts, t, p, o, k in msgs]


def _same(a: Capture, b: Capture) -> None:
    assert (a.prefix, a.trange, a.inventory) == (b.prefix, b.trange, b.inventory)
    assert sorted(a.inputs) == sorted(b.inputs)
    for k in a.inputs:
        assert _norm(a.inputs[k]) == _norm(b.inputs[k]), k
    assert _norm(a.plans) == _norm(b.plans) and _norm(a.control) == _norm(b.control)


def test_format_2_reads_back_what_format_1_reads(tmp_path: Path) -> None:
    cap, inv = _capture()
    write_export(tmp_path / "v2.avro", cap, inv)
    write_export_v1(tmp_path / "v1.avro", cap, inv)
    v2, v1 = read_export(tmp_path / "v2.avro"), read_export(tmp_path / "v1.avro")
    _same(v2, v1)
    for k, msgs in cap.inputs.items():
        assert _norm(v2.inputs[k]) == _norm(msgs)
    narrow = TimeRange(2_000, 50_000)
    _same(read_export(tmp_path / "v2.avro", narrow), read_export(tmp_path / "v1.avro", narrow))
    assert read_export(tmp_path / "v2.avro", narrow).input_count < cap.input_count


def test_null_codec_and_empty_capture(tmp_path: Path) -> None:
    cap = Capture(P, TimeRange(1, 2))
    write_export(tmp_path / "e.avro", cap, {}, codec="null")
    got = read_export(tmp_path / "e.avro")
    assert got.input_count == 0 and got.inventory == {} and not got.plans
