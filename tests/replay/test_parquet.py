"""Parquet for analysts: `fleetgate report` writes metrics and decisions as Parquet, `fleetgate export
--format parquet` the decoded events.  Read back with DuckDB and pandas and checked against the
CSV, the replay's timeline and the codecs.  No broker: the input is an export file."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from streams.cli import main
from streams.codecs import DecodeError, Decoder
from streams.replay.export import write_export
from streams.replay.timerange import format_ms
from tests.pipeline import fleet
from tests.replay.memory import PREFIX, small_capture

POISON_AT = 1_790_000_030_000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("parquet")
    cap = small_capture()
    telemetry = cap.inputs[("telemetry", 0)]
    poison = (fleet.POISON, None, POISON_AT, PREFIX + "telemetry", 0, len(telemetry), b"dev-x")
    cap.inputs[("telemetry", 0)] = [*telemetry, poison]
    write_export(tmp / "in.avro", cap, cap.inventory)
    (tmp / "policy.yaml").write_text(fleet.POLICY_YAML)
    report = tmp / "report"
    base = ["--file", str(tmp / "in.avro"), "--policy", str(tmp / "policy.yaml")]
    assert main(["report", fleet.ROLLOUT, "-o", str(report), *base]) == 0
    assert main(["replay", *base, "-o", str(tmp / "timeline.jsonl")]) == 0
    assert (
        main(["export", "--file", str(tmp / "in.avro"), "--format", "parquet", "-o", str(tmp / "ev.parquet")])
        == 0
    )
    return {
        "dir": report,
        "timeline": tmp / "timeline.jsonl",
        "events": tmp / "ev.parquet",
        "export": tmp / "in.avro",
    }


def _same(csv_cell: str, value: object) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return csv_cell == ""
    if isinstance(value, float):  # the CSV keeps 6 significant digits
        return math.isclose(float(csv_cell), value, rel_tol=1e-5, abs_tol=1e-12)
    return csv_cell == str(value)


def test_metrics_parquet_has_the_csv_rows(files: dict[str, Path]) -> None:
    with (files["dir"] / "metrics.csv").open(newline="") as fo:
        head, *rows = list(csv.reader(fo))
    df = pd.read_parquet(files["dir"] / "metrics.parquet")
    assert list(df.columns) == head
    assert len(df) == len(rows) > 10
    typed = {"window_start", "window_end"}  # timestamps; the CSV has their ISO text
    for i, row in enumerate(rows):
        rec = df.iloc[i]
        for name, cell in zip(head, row, strict=True):
            if name in typed:
                assert cell == format_ms(int(rec[f"{name}_ms"])), (i, name)
                assert rec[name].value // 1_000_000 == rec[f"{name}_ms"], (i, name)
            else:
                v = rec[name]
                v = v.item() if hasattr(v, "item") else v
                assert _same(cell, v), (i, name, cell, v)


def test_duckdb_aggregates_equal_the_csv(files: dict[str, Path]) -> None:
    with (files["dir"] / "metrics.csv").open(newline="") as fo:
        rows = list(csv.DictReader(fo))
    path = str(files["dir"] / "metrics.parquet")
    got = duckdb.sql(
        "SELECT count(*), sum(devices_reporting), max(ack_failure_rate), "
        "count(*) FILTER (WHERE cohort = 'baseline') FROM read_parquet(?)",
        params=[path],
    ).fetchall()[0]
    rates = [float(r["ack_failure_rate"]) for r in rows if r["ack_failure_rate"]]
    assert got[0] == len(rows)
    assert got[1] == sum(int(r["devices_reporting"]) for r in rows)
    assert math.isclose(got[2], max(rates), rel_tol=1e-5) and got[2] > 0.05  # the failing model
    assert got[3] == sum(r["cohort"] == "baseline" for r in rows) > 0


def test_decisions_parquet_holds_the_replayed_decisions(files: dict[str, Path]) -> None:
    timeline = [json.loads(line) for line in files["timeline"].read_text().splitlines()]
    path = str(files["dir"] / "decisions.parquet")
    got = duckdb.sql(
        "SELECT decision_id, action, window_end_ms, policy_version FROM read_parquet(?) "
        "WHERE origin = 'replay' ORDER BY window_end_ms",
        params=[path],
    ).fetchall()
    assert got == [(d["decision_id"], d["action"], d["window_end_ms"], d["policy_version"]) for d in timeline]
    breached = duckdb.sql(
        "SELECT action, r.rule_id, r.observed > r.threshold FROM read_parquet(?), "
        "unnest(reasons) AS t(r) WHERE r.verdict = 'breach'",
        params=[path],
    ).fetchall()
    assert breached == [("ROLLBACK", "ack-failure", True)]
    df = pd.read_parquet(path)
    assert list(df.loc[df.action == "ROLLBACK", "breached_rules"].iloc[0]) == ["ack-failure"]


def test_export_parquet_holds_every_decoded_event(files: dict[str, Path]) -> None:
    from streams.replay.export import read_export

    cap = read_export(files["export"])
    decoders = {"telemetry": Decoder.telemetry(), "acks": Decoder.ack(), "device-commands": Decoder.output()}
    kinds = {"telemetry": "telemetry", "acks": "ack", "device-commands": "device_command"}
    want: Counter[str] = Counter()
    errors = 0
    for (topic, _), msgs in cap.inputs.items():
        for m in msgs:
            rec = decoders[topic].decode(*m[:6])
            want["decode_error" if isinstance(rec, DecodeError) else kinds[topic]] += 1
            errors += getattr(rec, "errors", 0)
    path = str(files["events"])
    got = dict(
        duckdb.sql("SELECT kind, count(*) FROM read_parquet(?) GROUP BY kind", params=[path]).fetchall()
    )
    assert got == dict(want) and got["decode_error"] == 1
    bad = duckdb.sql(
        "SELECT reason, device_id, epoch_ms(kafka_timestamp) FROM read_parquet(?) WHERE kind = 'decode_error'",
        params=[path],
    ).fetchall()
    assert bad == [("truncated_frame", "dev-x", POISON_AT)]
    df = pd.read_parquet(path)
    tele = df[df.kind == "telemetry"]
    assert int(tele.errors.sum()) == errors
    assert set(tele.source_format) == {"json-legacy", "avro-v1", "avro-v2"}
    assert dict(tele.metrics.iloc[0])["cpu_pct"] == 20.0
    assert (df.kafka_timestamp.diff().dropna() >= pd.Timedelta(0)).all()  # in time order
    failed = duckdb.sql(
        "SELECT count(DISTINCT device_id) FROM read_parquet(?) WHERE kind = 'ack' AND status = 'FAILED'",
        params=[path],
    ).fetchall()
    assert failed[0][0] == sum(1 for d in fleet.Fleet.make(60).treated() if d.model == "cam-c1")


def test_without_pyarrow_the_report_still_writes_html_and_csv(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    out = tmp_path / "r"
    policy = files["timeline"].parent / "policy.yaml"
    assert (
        main(
            ["report", fleet.ROLLOUT, "-o", str(out), "--file", str(files["export"]), "--policy", str(policy)]
        )
        == 0
    )
    assert "pip install 'fleetgate[analytics]'" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "metrics.csv"]
    args = [
        "export",
        "--file",
        str(files["export"]),
        "--format",
        "parquet",
        "-o",
        str(tmp_path / "e.parquet"),
    ]
    assert main(args) == 2
    assert not (tmp_path / "e.parquet").exists()
