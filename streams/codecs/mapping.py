"""Canonical mapping rules: device payloads <-> ``gates.events`` records.

Decoding (every generation becomes one typed shape):

* Avro telemetry/ack of any version is first read into the *latest* reader schema's
  shape (v1 data gets the v2 defaults); then:
  ``event_time_ms`` = ``event_time_ms`` if set, else ``ts * 1000`` (v1 writes seconds);
  ``metrics`` = the metric fields actually present (non-null) plus ``extra_metrics``;
  ack status = the ``state`` enum when it is not UNKNOWN, else the free-text
  ``status`` mapped through :data:`STATUS_TEXT` (unknown text -> ``AckStatus.UNKNOWN``).
* Legacy JSON telemetry (``telemetry_legacy_json.v1.avsc``): ``t`` seconds -> ms,
  ``temp``/``cpu``/``bat`` -> ``temperature_c``/``cpu_pct``/``battery_pct`` when present.
* Impossible values (empty device id, non-finite metric, negative counter) raise
  :class:`~streams.codecs.jsonform.JsonShapeError` with ``invalid_value``.

Encoding (for the fleet simulator and tests) is the inverse, per device format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from gates.events import Ack, AckStatus, SourceFormat, Telemetry
from streams.codecs.errors import ErrorReason
from streams.codecs.jsonform import JsonShapeError

__all__ = [
    "ACK_SELF_DEFAULTS",
    "TELEMETRY_SELF_DEFAULTS",
    "FAST_TELEMETRY",
    "KNOWN_METRICS_V2",
    "STATUS_TEXT",
    "ack_from_avro",
    "ack_from_fields",
    "ack_status_from_text",
    "ack_to_avro",
    "telemetry_from_avro",
    "telemetry_from_fields",
    "telemetry_from_legacy_json",
    "telemetry_from_legacy_obj",
    "telemetry_to_avro",
    "telemetry_to_legacy_json",
]

# v2 metric fields that become entries of Telemetry.metrics (name = canonical metric name).
KNOWN_METRICS_V2 = ("temperature_c", "cpu_pct", "battery_pct", "memory_free_kb", "rssi_dbm")
# legacy JSON key -> canonical metric name
_LEGACY_METRICS = (("temp", "temperature_c"), ("cpu", "cpu_pct"), ("bat", "battery_pct"))

# v1 free-text statuses (lower-cased, '-' and ' ' -> '_') -> canonical status.
STATUS_TEXT: Mapping[str, AckStatus] = {
    **{s.value.lower(): s for s in AckStatus},
    "ack": AckStatus.RECEIVED,
    "accepted": AckStatus.RECEIVED,
    "queued": AckStatus.RECEIVED,
    "download": AckStatus.DOWNLOADING,
    "download_complete": AckStatus.DOWNLOADED,
    "installing": AckStatus.APPLYING,
    "install": AckStatus.APPLYING,
    "updating": AckStatus.APPLYING,
    "ok": AckStatus.APPLIED,
    "success": AckStatus.APPLIED,
    "succeeded": AckStatus.APPLIED,
    "done": AckStatus.APPLIED,
    "installed": AckStatus.APPLIED,
    "error": AckStatus.FAILED,
    "fail": AckStatus.FAILED,
    "failure": AckStatus.FAILED,
    "refused": AckStatus.REJECTED,
    "declined": AckStatus.REJECTED,
    "timeout": AckStatus.TIMED_OUT,
    "timedout": AckStatus.TIMED_OUT,
    "rollback": AckStatus.ROLLED_BACK,
    "rolledback": AckStatus.ROLLED_BACK,
    "reverted": AckStatus.ROLLED_BACK,
}
_STATUS_BY_NAME = {s.value: s for s in AckStatus}
_new = object.__new__


def ack_status_from_text(text: str) -> AckStatus:
    """Map a free-text status to AckStatus; anything unrecognised is UNKNOWN."""
    s = _STATUS_BY_NAME.get(text)
    if s is not None:
        return s
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    return STATUS_TEXT.get(key, AckStatus.UNKNOWN)


def _bad(detail: str) -> JsonShapeError:
    return JsonShapeError(ErrorReason.INVALID_VALUE, detail)


# Hot-path construction of the frozen, slotted Telemetry: a frozen dataclass __init__ goes
# through object.__setattr__ once per field (~1 us for 13 fields); setting the slots
# directly gives the identical object in half the time.  Used only while the field list is
# exactly the one below; any change to gates.events.Telemetry falls back to the constructor.
_TELEMETRY_FIELDS = (
    "device_id", "event_time_ms", "ingest_time_ms", "firmware_version", "source_format", "model",
    "config_version", "uptime_s", "reconnects", "errors", "rebooted", "command_latency_ms", "metrics",
)  # fmt: skip
FAST_TELEMETRY = tuple(f.name for f in fields(Telemetry)) == _TELEMETRY_FIELDS
_T_SET = tuple(Telemetry.__dict__[n].__set__ for n in _TELEMETRY_FIELDS) if FAST_TELEMETRY else ()


# Fields added after v1, with the defaults the mappers below apply themselves when a field
# is absent (v1 data).  The decoder skips merging the reader schema's defaults only when
# these are exactly equal to them (see kinds.StreamKind.self_defaults), so they cannot drift.
TELEMETRY_SELF_DEFAULTS: Mapping[str, Any] = {
    "event_time_ms": None, "model": None, "config_version": None, "uptime_s": None, "reconnect_count": 0,
    "rebooted": False, "command_latency_ms": None, "battery_pct": None, "memory_free_kb": None,
    "rssi_dbm": None, "extra_metrics": {},
}  # fmt: skip
ACK_SELF_DEFAULTS: Mapping[str, Any] = {
    "event_time_ms": None, "state": "UNKNOWN", "error_code": None, "attempt": 1, "rollout_id": None,
    "command_id": None,
}  # fmt: skip


def telemetry_from_avro(d: dict[str, Any], source_format: SourceFormat, ingest_time_ms: int) -> Telemetry:
    """Canonical Telemetry from a dict in the latest telemetry schema's shape."""
    device_id = d["device_id"]
    if not device_id:
        raise _bad("empty device_id")
    event_ms = d.get("event_time_ms")
    if event_ms is None:
        event_ms = d["ts"] * 1000
    errors = d["error_count"]
    reconnects = d.get("reconnect_count", 0)
    if errors < 0 or reconnects < 0:
        raise _bad("negative counter")
    metrics = {"temperature_c": d["temperature_c"], "cpu_pct": d["cpu_pct"]}
    v = d.get("battery_pct")
    if v is not None:
        metrics["battery_pct"] = v
    v = d.get("memory_free_kb")
    if v is not None:
        metrics["memory_free_kb"] = v
    v = d.get("rssi_dbm")
    if v is not None:
        metrics["rssi_dbm"] = v
    extra = d.get("extra_metrics")
    if extra:
        for k, v in extra.items():
            metrics.setdefault(k, v)
    total = sum(metrics.values())  # NaN/inf anywhere (or an absurd overflow) makes this non-finite
    if total - total != 0.0:
        raise _bad("non-finite metric")
    if not FAST_TELEMETRY:  # pragma: no cover - only after gates.events.Telemetry changes
        return Telemetry(
            device_id, event_ms, ingest_time_ms, d["firmware"], source_format, d.get("model"),
            d.get("config_version"),
            d.get("uptime_s"), reconnects, errors, d.get("rebooted", False), d.get("command_latency_ms"), metrics,
        )  # fmt: skip
    o = _new(Telemetry)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = _T_SET
    s0(o, device_id)
    s1(o, event_ms)
    s2(o, ingest_time_ms)
    s3(o, d["firmware"])
    s4(o, source_format)
    s5(o, d.get("model"))
    s6(o, d.get("config_version"))
    s7(o, d.get("uptime_s"))
    s8(o, reconnects)
    s9(o, errors)
    s10(o, d.get("rebooted", False))
    s11(o, d.get("command_latency_ms"))
    s12(o, metrics)
    return o


def telemetry_from_fields(
    ingest_time_ms: int, source_format: SourceFormat, device_id: str, ts: int, firmware: str,
    temperature_c: float, cpu_pct: float, error_count: int, event_time_ms: int | None, model: str | None,
    config_version: str | None, uptime_s: int | None, reconnect_count: int, rebooted: bool,
    command_latency_ms: float | None, battery_pct: float | None, memory_free_kb: float | None,
    rssi_dbm: float | None, extra_metrics: dict[str, float],
) -> Telemetry | None:  # fmt: skip
    """:func:`telemetry_from_avro` for the generated readers (``streams/codecs/fastread.py``).

    Takes the latest telemetry schema's fields positionally instead of a dict; returns None
    where :func:`telemetry_from_avro` raises (the decoder then takes the fastavro path, which
    produces the exact dead letter).  The record is the one :func:`telemetry_from_avro` gives.
    """
    if not device_id or error_count < 0 or reconnect_count < 0:
        return None
    metrics = {"temperature_c": temperature_c, "cpu_pct": cpu_pct}
    if battery_pct is not None:
        metrics["battery_pct"] = battery_pct
    if memory_free_kb is not None:
        metrics["memory_free_kb"] = memory_free_kb
    if rssi_dbm is not None:
        metrics["rssi_dbm"] = rssi_dbm
    if extra_metrics:
        for k, v in extra_metrics.items():
            metrics.setdefault(k, v)
    total = sum(metrics.values())
    if total - total != 0.0:
        return None
    if event_time_ms is None:
        event_time_ms = ts * 1000
    if not FAST_TELEMETRY:  # pragma: no cover - only after gates.events.Telemetry changes
        return Telemetry(
            device_id, event_time_ms, ingest_time_ms, firmware, source_format, model, config_version,
            uptime_s, reconnect_count, error_count, rebooted, command_latency_ms, metrics,
        )  # fmt: skip
    o = _new(Telemetry)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = _T_SET
    s0(o, device_id)
    s1(o, event_time_ms)
    s2(o, ingest_time_ms)
    s3(o, firmware)
    s4(o, source_format)
    s5(o, model)
    s6(o, config_version)
    s7(o, uptime_s)
    s8(o, reconnect_count)
    s9(o, error_count)
    s10(o, rebooted)
    s11(o, command_latency_ms)
    s12(o, metrics)
    return o


def telemetry_from_legacy_obj(obj: dict[str, Any], ingest_time_ms: int) -> Telemetry | None:
    """Legacy JSON telemetry straight from the parsed JSON object (the decoder's fast path).

    Returns the record that ``from_plain_json`` + :func:`telemetry_from_legacy_json` give, or
    None for anything they would reject or convert in another way (the decoder then takes
    that path and produces the exact dead letter).
    """
    g = obj.get
    device_id = g("id")
    t = g("t")
    fw = g("fw")
    errors = g("err", 0)
    reconnects = g("rc", 0)
    rebooted = g("boot", False)
    if (
        device_id.__class__ is not str
        or not device_id
        or t.__class__ is not int
        or fw.__class__ is not str
        or errors.__class__ is not int
        or reconnects.__class__ is not int
        or rebooted.__class__ is not bool
        or not _LONG_MIN <= t <= _LONG_MAX
        or not 0 <= errors <= _INT_MAX
        or not 0 <= reconnects <= _INT_MAX
    ):
        return None
    metrics: dict[str, float] = {}
    for key, name in _LEGACY_METRICS:
        v = g(key)
        if v is None:
            continue
        c = v.__class__
        if c is int:
            if not -_FLOAT_INT <= v <= _FLOAT_INT:
                return None
            v = float(v)
        elif c is not float:
            return None
        if v - v != 0.0:
            return None
        metrics[name] = v
    if not FAST_TELEMETRY:  # pragma: no cover - only after gates.events.Telemetry changes
        return Telemetry(
            device_id, t * 1000, ingest_time_ms, fw, SourceFormat.JSON_LEGACY, None, None, None, reconnects,
            errors, rebooted, None, metrics,
        )  # fmt: skip
    o = _new(Telemetry)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = _T_SET
    s0(o, device_id)
    s1(o, t * 1000)
    s2(o, ingest_time_ms)
    s3(o, fw)
    s4(o, SourceFormat.JSON_LEGACY)
    s5(o, None)
    s6(o, None)
    s7(o, None)
    s8(o, reconnects)
    s9(o, errors)
    s10(o, rebooted)
    s11(o, None)
    s12(o, metrics)
    return o


_LONG_MIN, _LONG_MAX, _INT_MAX = -(1 << 63), (1 << 63) - 1, (1 << 31) - 1
_FLOAT_INT = 1 << 1000  # ints well inside the float range convert without OverflowError


def ack_from_fields(
    ingest_time_ms: int, source_format: SourceFormat, device_id: str, ts: int, status: str, version: str,
    event_time_ms: int | None, state: str, error_code: str | None, attempt: int, rollout_id: str | None,
    command_id: str | None,
) -> Ack | None:  # fmt: skip
    """:func:`ack_from_avro` for the generated readers; None where it raises."""
    if not device_id or attempt < 0:
        return None
    if event_time_ms is None:
        event_time_ms = ts * 1000
    st = _STATUS_BY_NAME.get(state, AckStatus.UNKNOWN)
    if st is AckStatus.UNKNOWN:
        st = ack_status_from_text(status)
    return Ack(
        device_id, event_time_ms, ingest_time_ms, st, source_format, rollout_id, version or None, command_id,
        error_code, attempt,
    )  # fmt: skip


def telemetry_from_legacy_json(d: dict[str, Any], ingest_time_ms: int) -> Telemetry:
    """Canonical Telemetry from a dict already checked against the legacy JSON shape."""
    if not d["id"]:
        raise _bad("empty id")
    if d["err"] < 0 or d["rc"] < 0:
        raise _bad("negative counter")
    metrics = {}
    for key, name in _LEGACY_METRICS:
        v = d[key]
        if v is not None:
            metrics[name] = v
    return Telemetry(
        device_id=d["id"],
        event_time_ms=d["t"] * 1000,
        ingest_time_ms=ingest_time_ms,
        firmware_version=d["fw"],
        source_format=SourceFormat.JSON_LEGACY,
        reconnects=d["rc"],
        errors=d["err"],
        rebooted=d["boot"],
        metrics=metrics,
    )


def ack_from_avro(d: dict[str, Any], source_format: SourceFormat, ingest_time_ms: int) -> Ack:
    """Canonical Ack from a dict in the latest ack schema's shape."""
    if not d["device_id"]:
        raise _bad("empty device_id")
    event_ms = d.get("event_time_ms")
    if event_ms is None:
        event_ms = d["ts"] * 1000
    status = _STATUS_BY_NAME.get(d.get("state", "UNKNOWN"), AckStatus.UNKNOWN)
    if status is AckStatus.UNKNOWN:
        status = ack_status_from_text(d["status"])
    attempt = d.get("attempt", 1)
    if attempt < 0:
        raise _bad("negative attempt")
    return Ack(
        device_id=d["device_id"],
        event_time_ms=event_ms,
        ingest_time_ms=ingest_time_ms,
        status=status,
        source_format=source_format,
        rollout_id=d.get("rollout_id"),
        target_version=d["version"] or None,
        command_id=d.get("command_id"),
        error_code=d.get("error_code"),
        attempt=attempt,
    )


def telemetry_to_avro(t: Telemetry, version: int) -> dict[str, Any]:
    """The Avro record of telemetry ``version`` (1 or 2) for a canonical Telemetry."""
    m = t.metrics
    d: dict[str, Any] = {
        "device_id": t.device_id,
        "ts": t.event_time_ms // 1000,
        "firmware": t.firmware_version,
        "temperature_c": m.get("temperature_c", 0.0),
        "cpu_pct": m.get("cpu_pct", 0.0),
        "error_count": t.errors,
    }
    if version == 1:
        return d
    d.update(
        event_time_ms=t.event_time_ms,
        model=t.model,
        config_version=t.config_version,
        uptime_s=t.uptime_s,
        reconnect_count=t.reconnects,
        rebooted=t.rebooted,
        command_latency_ms=t.command_latency_ms,
        battery_pct=m.get("battery_pct"),
        memory_free_kb=m.get("memory_free_kb"),
        rssi_dbm=m.get("rssi_dbm"),
        extra_metrics={k: float(v) for k, v in m.items() if k not in KNOWN_METRICS_V2},
    )
    return d


def telemetry_to_legacy_json(t: Telemetry) -> dict[str, Any]:
    """The legacy JSON object for a canonical Telemetry (absent metrics omitted)."""
    d: dict[str, Any] = {"id": t.device_id, "t": t.event_time_ms // 1000, "fw": t.firmware_version}
    for key, name in _LEGACY_METRICS:
        if name in t.metrics:
            d[key] = t.metrics[name]
    d["err"] = t.errors
    d["rc"] = t.reconnects
    d["boot"] = t.rebooted
    return d


def ack_to_avro(a: Ack, version: int) -> dict[str, Any]:
    """The Avro record of ack ``version`` (1 or 2) for a canonical Ack."""
    d: dict[str, Any] = {
        "device_id": a.device_id,
        "ts": a.event_time_ms // 1000,
        "status": a.status.value.lower() if version == 1 else a.status.value,
        "version": a.target_version or "",
    }
    if version == 1:
        return d
    d.update(
        event_time_ms=a.event_time_ms,
        state=a.status.value,
        error_code=a.error_code,
        attempt=a.attempt,
        rollout_id=a.rollout_id,
        command_id=a.command_id,
    )
    return d
