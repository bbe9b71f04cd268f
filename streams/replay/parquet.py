"""Parquet for analysts: the report's windowed metrics and decisions, and an export's decoded events.

Typed columns, so a notebook needs no parsing: times as UTC millisecond timestamps (and the raw
epoch milliseconds beside them), metrics as nullable doubles, counts as nullable integers,
decision reasons as a list of structs, telemetry metrics as a map.  ``metrics.parquet`` has
exactly the rows and columns of ``metrics.csv``.  pyarrow is an optional dependency (the
``analytics`` extra): without it :func:`require_pyarrow` raises a ReplayError saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gates.events import Ack, CohortHealth, Decision, DeviceAttributes, DeviceCommand, Telemetry
from streams.codecs import DecodeError, Decoder
from streams.replay.capture import Capture, as_tuple
from streams.replay.errors import ReplayError

__all__ = ["require_pyarrow", "write_decisions", "write_events", "write_metrics"]

ROW_GROUP = 65_536  # events per Parquet row group: bounded memory for large exports


def require_pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the submodule the writers use
    except ImportError:
        raise ReplayError("Parquet output needs pyarrow: pip install 'fleetgate[analytics]'") from None
    return pa


def _ts(pa: Any) -> Any:
    return pa.timestamp("ms", tz="UTC")


def write_metrics(
    path: Path, rows: Sequence[CohortHealth], metrics: Sequence[str], counts: Sequence[str]
) -> int:
    """The windowed cohort health, one row per (rollout, stage, cohort, firmware, window), as in the CSV."""
    pa = require_pyarrow()
    cols: dict[str, tuple[Any, list[Any]]] = {
        "rollout_id": (pa.string(), [h.rollout_id for h in rows]),
        "stage": (pa.int32(), [h.stage for h in rows]),
        "stage_name": (pa.string(), [h.stage_name for h in rows]),
        "cohort": (pa.string(), ["baseline" if h.is_baseline else "treated" for h in rows]),
        "firmware_version": (pa.string(), [h.firmware_version for h in rows]),
        "window_start": (_ts(pa), [h.window_start_ms for h in rows]),
        "window_end": (_ts(pa), [h.window_end_ms for h in rows]),
        "window_start_ms": (pa.int64(), [h.window_start_ms for h in rows]),
        "window_end_ms": (pa.int64(), [h.window_end_ms for h in rows]),
        "devices_expected": (pa.int64(), [h.devices_expected for h in rows]),
        "devices_reporting": (pa.int64(), [h.devices_reporting for h in rows]),
    }
    for m in metrics:
        cols[m] = (pa.float64(), [h.metrics.get(m) for h in rows])
    for c in counts:
        cols[f"count_{c}"] = (pa.int64(), [h.counts.get(c) for h in rows])
    _write(pa, path, cols)
    return len(rows)


def _reason_type(pa: Any) -> Any:
    return pa.struct(
        [
            ("rule_id", pa.string()),
            ("metric", pa.string()),
            ("verdict", pa.string()),
            ("observed", pa.float64()),
            ("baseline", pa.float64()),
            ("threshold", pa.float64()),
            ("sample_size", pa.int64()),
            ("interval_low", pa.float64()),
            ("interval_high", pa.float64()),
            ("firmware_version", pa.string()),
            ("detail", pa.string()),
        ]
    )


def write_decisions(path: Path, decisions: Iterable[tuple[str, Decision]]) -> int:
    """``(origin, decision)`` pairs (origin: replay, live or operator), ordered by window end."""
    pa = require_pyarrow()
    ds = sorted(decisions, key=lambda od: (od[1].window_end_ms, od[0], od[1].stage, od[1].decision_id))
    reasons = [[{f: getattr(r, f) for f in _reason_type(pa).names} for r in d.reasons] for _, d in ds]
    cols: dict[str, tuple[Any, list[Any]]] = {
        "origin": (pa.string(), [o for o, _ in ds]),
        "decision_id": (pa.string(), [d.decision_id for _, d in ds]),
        "rollout_id": (pa.string(), [d.rollout_id for _, d in ds]),
        "stage": (pa.int32(), [d.stage for _, d in ds]),
        "stage_name": (pa.string(), [d.stage_name for _, d in ds]),
        "action": (pa.string(), [d.action.value for _, d in ds]),
        "source": (pa.string(), [d.source.value for _, d in ds]),
        "window_start": (_ts(pa), [d.window_start_ms for _, d in ds]),
        "window_end": (_ts(pa), [d.window_end_ms for _, d in ds]),
        "window_start_ms": (pa.int64(), [d.window_start_ms for _, d in ds]),
        "window_end_ms": (pa.int64(), [d.window_end_ms for _, d in ds]),
        "watermark_ms": (pa.int64(), [d.watermark_ms for _, d in ds]),
        "policy_version": (pa.string(), [d.policy_version for _, d in ds]),
        "engine_version": (pa.string(), [d.engine_version for _, d in ds]),
        "operator": (pa.string(), [d.operator for _, d in ds]),
        "note": (pa.string(), [d.note for _, d in ds]),
        "key_id": (pa.string(), [d.key_id for _, d in ds]),
        "breached_rules": (
            pa.list_(pa.string()),
            [[r.rule_id for r in d.reasons if r.verdict == "breach"] for _, d in ds],
        ),
        "reasons": (pa.list_(_reason_type(pa)), reasons),
    }
    _write(pa, path, cols)
    return len(ds)


# One wide table for every input kind: the columns a kind lacks are null.
_EVENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("kind", "string"),
    ("topic", "string"),
    ("partition", "int32"),
    ("offset", "int64"),
    ("kafka_timestamp", "ts"),
    ("device_id", "string"),
    ("event_time", "ts"),
    ("event_time_ms", "int64"),
    ("ingest_time_ms", "int64"),
    ("source_format", "string"),
    ("firmware_version", "string"),
    ("model", "string"),
    ("config_version", "string"),
    ("uptime_s", "int64"),
    ("reconnects", "int64"),
    ("errors", "int64"),
    ("rebooted", "bool"),
    ("command_latency_ms", "float64"),
    ("metrics", "map"),
    ("status", "string"),
    ("rollout_id", "string"),
    ("target_version", "string"),
    ("command_id", "string"),
    ("error_code", "string"),
    ("attempt", "int64"),
    ("stage", "int32"),
    ("command_kind", "string"),
    ("target_kind", "string"),
    ("reason", "string"),
    ("detail", "string"),
    ("region", "string"),
    ("customer", "string"),
    ("criticality", "string"),
    ("connectivity_profile", "string"),
    ("site", "string"),
)
_KINDS = {"telemetry": "telemetry", "acks": "ack", "device-commands": "device_command"}


def _row(topic: str, raw: tuple[Any, ...], rec: Any, attrs: DeviceAttributes | None) -> dict[str, Any]:
    _, _, ts, full_topic, partition, offset = raw[:6]
    row: dict[str, Any] = {
        "topic": full_topic,
        "partition": partition,
        "offset": offset,
        "kafka_timestamp": ts,
    }
    if isinstance(rec, DecodeError):
        row |= {"kind": "decode_error", "reason": rec.reason.value, "detail": rec.detail,
                "firmware_version": rec.firmware_version, "source_format": rec.detected_format}  # fmt: skip
        key = raw[6] if len(raw) > 6 else None
        row["device_id"] = key.decode("utf-8", "replace") if key else None
        return row
    row["kind"] = _KINDS[topic]
    row["device_id"] = rec.device_id
    if isinstance(rec, Telemetry):
        row |= {
            "event_time": rec.event_time_ms, "event_time_ms": rec.event_time_ms,
            "ingest_time_ms": rec.ingest_time_ms, "source_format": rec.source_format.value,
            "firmware_version": rec.firmware_version, "model": rec.model, "config_version": rec.config_version,
            "uptime_s": rec.uptime_s, "reconnects": rec.reconnects, "errors": rec.errors,
            "rebooted": rec.rebooted, "command_latency_ms": rec.command_latency_ms,
            "metrics": sorted(rec.metrics.items()),
        }  # fmt: skip
    elif isinstance(rec, Ack):
        row |= {
            "event_time": rec.event_time_ms, "event_time_ms": rec.event_time_ms,
            "ingest_time_ms": rec.ingest_time_ms, "source_format": rec.source_format.value,
            "status": rec.status.value, "rollout_id": rec.rollout_id, "target_version": rec.target_version,
            "command_id": rec.command_id, "error_code": rec.error_code, "attempt": rec.attempt,
        }  # fmt: skip
    elif isinstance(rec, DeviceCommand):
        row |= {
            "event_time": rec.issued_at_ms, "event_time_ms": rec.issued_at_ms, "rollout_id": rec.rollout_id,
            "command_id": rec.command_id, "stage": rec.stage, "command_kind": rec.kind.value,
            "target_kind": rec.target_kind.value, "target_version": rec.target_version,
        }  # fmt: skip
    if attrs is not None:
        row |= {"region": attrs.region, "customer": attrs.customer, "criticality": attrs.criticality,
                "connectivity_profile": attrs.connectivity_profile, "site": attrs.site}  # fmt: skip
    return row


def _events(capture: Capture, inventory: dict[str, DeviceAttributes]) -> Iterator[dict[str, Any]]:
    """Every input record decoded, ordered by Kafka timestamp, then topic, partition, offset."""
    decoders = {"telemetry": Decoder.telemetry(), "acks": Decoder.ack(), "device-commands": Decoder.output()}
    keyed = []
    for (topic, _), msgs in capture.inputs.items():
        for m in msgs:
            raw = as_tuple(m)
            keyed.append(((raw[2], raw[3], raw[4], raw[5]), topic, raw))
    keyed.sort(key=lambda k: k[0])
    for _, topic, raw in keyed:
        value, headers, ts, full_topic, partition, offset = raw[:6]
        key = raw[6] if len(raw) > 6 else None
        rec = decoders[topic].decode(value, headers, ts, full_topic, partition, offset, key)
        yield _row(topic, raw, rec, inventory.get(getattr(rec, "device_id", "")))


def write_events(path: Path, capture: Capture, inventory: dict[str, DeviceAttributes]) -> dict[str, int]:
    """The capture's input records as decoded canonical events; returns the row count per kind."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
             "bool": pa.bool_(), "ts": _ts(pa), "map": pa.map_(pa.string(), pa.float64())}  # fmt: skip
    schema = pa.schema([(name, types[t]) for name, t in _EVENT_FIELDS])
    counts: dict[str, int] = {}
    tmp = path.with_name(path.name + ".part")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for row in _events(capture, inventory):
            counts[row["kind"]] = counts.get(row["kind"], 0) + 1
            batch.append(row)
            if len(batch) >= ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or not counts:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    tmp.replace(path)  # a reader never sees half a file
    return counts


def _write(pa: Any, path: Path, cols: dict[str, tuple[Any, list[Any]]]) -> None:
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(values, type=t) for name, (t, values) in cols.items()})
    pq.write_table(table, path, compression="zstd")
