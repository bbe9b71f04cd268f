"""Fast telemetry encoding: the bytes of ``streams.codecs.Encoder``, at a fraction of the cost.

The codecs' ``Encoder`` builds a dict per record and runs ``fastavro.schemaless_writer``
(about 17 us per v2 telemetry record).  The simulator needs 5 us per event *including*
generation, so this module writes the same three payloads by hand: Avro binary is a plain
concatenation of fields (zig-zag varints, little-endian floats, union branch index), and
the framing prefixes and headers come from the codecs' catalogue and ``Encoder`` once.
``tests/simulator/test_wire.py`` checks byte equality with ``Encoder.encode`` on random
records, so the codecs stay the single definition of the formats.

Acks are rare (a handful per command) and go through ``Encoder.encode`` unchanged.
"""

from __future__ import annotations

import struct
from typing import Any

from gates.events import SourceFormat, Telemetry
from streams.codecs import Encoder, Framing
from streams.codecs.encoder import OutputHeaders
from streams.codecs.kinds import TELEMETRY_NAME

__all__ = ["FMT_AVRO_V1", "FMT_AVRO_V2", "FMT_JSON", "TelemetryWire", "avro_long"]

FMT_JSON, FMT_AVRO_V1, FMT_AVRO_V2 = 0, 1, 2
SOURCE_FORMATS = (SourceFormat.JSON_LEGACY, SourceFormat.AVRO_V1, SourceFormat.AVRO_V2)

_F = struct.Struct("<f").pack
_FF = struct.Struct("<ff").pack


def _varint_slow(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = [_varint_slow(z) for z in range(1 << 14)]


def avro_long(n: int) -> bytes:
    """Avro int/long: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 16384:
        return _SMALL[z]
    if z < 2097152:
        return bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14))
    if z < 268435456:
        return bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, ((z >> 14) & 0x7F) | 0x80, z >> 21))
    return _varint_slow(z)


class TelemetryWire:
    """Encodes one telemetry report in a device format (JSON legacy, Avro v1, Avro v2).

    Legacy JSON is written bare, without headers, as the oldest firmware does (the decoder
    recognises unlabelled JSON as legacy telemetry); Avro carries the codecs' headers.
    """

    def __init__(self, framing: Framing = Framing.SINGLE_OBJECT, encoder: Encoder | None = None) -> None:
        if framing not in (Framing.SINGLE_OBJECT, Framing.CONFLUENT):
            raise ValueError(f"device Avro framing must be single-object or confluent, not {framing}")
        self.encoder = encoder or Encoder()
        self.framing = framing
        cat = self.encoder.catalogue
        self.prefix: dict[int, bytes] = {}
        self.headers: dict[int, OutputHeaders] = {FMT_JSON: []}
        for fmt, version in ((FMT_AVRO_V1, 1), (FMT_AVRO_V2, 2)):
            entry = cat.get(TELEMETRY_NAME, version)
            if framing is Framing.SINGLE_OBJECT:
                self.prefix[fmt] = b"\xc3\x01" + entry.fingerprint
            else:
                sid = self.encoder.resolver.id_for(entry, None)
                self.prefix[fmt] = b"\x00" + sid.to_bytes(4, "big")
            probe = Telemetry("x", 0, 0, "x", SourceFormat.INTERNAL)
            self.headers[fmt] = self.encoder.encode(probe, framing, version=version)[1]
        self._str: dict[str, bytes] = {}
        self._opt: dict[str | None, bytes] = {None: b"\x00"}
        self._t_ms = -1
        self._ts = b""
        self._et = b""
        self._ts_s = 0

    def astr(self, s: str) -> bytes:
        b = self._str.get(s)
        if b is None:
            raw = s.encode()
            b = self._str[s] = avro_long(len(raw)) + raw
        return b

    def aopt(self, s: str | None) -> bytes:
        b = self._opt.get(s)
        if b is None:
            b = self._opt[s] = b"\x02" + self.astr(s)  # type: ignore[arg-type]
        return b

    def _time(self, t_ms: int) -> None:
        self._t_ms = t_ms
        self._ts_s = t_ms // 1000
        self._ts = avro_long(self._ts_s)
        self._et = b"\x02" + avro_long(t_ms)

    def encode(
        self,
        fmt: int,
        did: str,
        t_ms: int,
        fw: str,
        model: str,
        cfg: str,
        uptime_s: int,
        rc: int,
        err: int,
        boot: int,
        lat: float | None,
        temp: float,
        cpu: float,
        bat: float | None,
        mem: float | None,
        rssi: float | None,
        key: bytes = b"",
    ) -> bytes:
        """The payload bytes; the headers are ``self.headers[fmt]``.  ``key``: ``did`` as UTF-8."""
        if not key:
            key = did.encode()
        elif not did and fmt == FMT_JSON:
            did = key.decode()
        if t_ms != self._t_ms:
            self._time(t_ms)
        if fmt == FMT_AVRO_V2:
            return b"".join(
                (
                    self.prefix[2],
                    _SMALL[len(key) << 1],
                    key,
                    self._ts,
                    self.astr(fw),
                    _FF(temp, cpu),
                    avro_long(err),
                    self._et,
                    self.aopt(model),
                    self.aopt(cfg),
                    b"\x02" + avro_long(uptime_s),
                    avro_long(rc),
                    b"\x01" if boot else b"\x00",
                    b"\x00" if lat is None else b"\x02" + _F(lat),
                    b"\x00" if bat is None else b"\x02" + _F(bat),
                    b"\x00" if mem is None else b"\x02" + _F(mem),
                    b"\x00" if rssi is None else b"\x02" + _F(rssi),
                    b"\x00",
                )
            )
        if fmt == FMT_AVRO_V1:
            return b"".join(
                (
                    self.prefix[1],
                    _SMALL[len(key) << 1],
                    key,
                    self._ts,
                    self.astr(fw),
                    _FF(temp, cpu),
                    avro_long(err),
                )
            )
        bat_s = "" if bat is None else f',"bat":{bat!r}'
        boot_s = "true" if boot else "false"
        return (
            f'{{"id":"{did}","t":{self._ts_s},"fw":"{fw}","temp":{temp!r},"cpu":{cpu!r}{bat_s},'
            f'"err":{err},"rc":{rc},"boot":{boot_s}}}'
        ).encode()

    def reference(self, fmt: int, *values: Any) -> tuple[bytes, OutputHeaders]:
        """The same report through the codecs' Encoder (slow; used by tests and the bench)."""
        record = to_telemetry(fmt, *values)
        if fmt == FMT_JSON:
            return self.encoder.encode(record, Framing.JSON)[0], []
        return self.encoder.encode(record, self.framing, version=fmt)


def to_telemetry(
    fmt: int,
    did: str,
    t_ms: int,
    fw: str,
    model: str,
    cfg: str,
    uptime_s: int,
    rc: int,
    err: int,
    boot: int,
    lat: float | None,
    temp: float,
    cpu: float,
    bat: float | None,
    mem: float | None,
    rssi: float | None,
) -> Telemetry:
    """The canonical Telemetry a report's values stand for."""
    metrics = {"temperature_c": temp, "cpu_pct": cpu}
    for name, v in (("battery_pct", bat), ("memory_free_kb", mem), ("rssi_dbm", rssi)):
        if v is not None:
            metrics[name] = v
    return Telemetry(
        did, t_ms, t_ms, fw, SOURCE_FORMATS[fmt], model, cfg, uptime_s, rc, err, bool(boot), lat, metrics
    )
