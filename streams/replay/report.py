"""`fleetgate report ROLLOUT -o DIR`: a self-contained HTML incident report, the metrics as CSV, and
the metrics and decisions as Parquet.

The data come from a replay of the rollout's range (the worker's policy, or ``--policy``), with
the decisions found on ``rollout-control`` drawn next to the replayed ones.  The page has no
external assets: the data are embedded as JSON and drawn as inline SVG by an inline script.
``metrics.parquet`` holds the rows of ``metrics.csv`` with typed columns; ``decisions.parquet``
the replayed, live and operator decisions with their reasons (streams/replay/parquet.py).
Without pyarrow (the ``analytics`` extra) the Parquet files are skipped with a note.
"""

from __future__ import annotations

import csv
import html
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gates.events import CohortHealth, Decision
from gates.policy import GatePolicy
from streams.config import Settings
from streams.replay.capture import Capture
from streams.replay.compare import live_decisions
from streams.replay.errors import ReplayError
from streams.replay.replayer import Timeline
from streams.replay.report_page import PAGE
from streams.replay.timeline import decision_json
from streams.replay.timerange import TimeRange, format_ms

__all__ = ["build_report", "health_table", "report_data", "write_csv", "write_html", "write_parquet"]


def _rollout_range(settings: Settings, rollout: str, policy: GatePolicy) -> TimeRange:
    """From the rollout's first plan (minus the look-back, for baselines) to now."""
    from streams.replay.kafka import open_consumer, read_range
    from streams.replay.session import now_ms

    consumer = open_consumer(settings)
    try:
        got = read_range(consumer, {settings.topic("rollouts"): (None, None)})
    finally:
        consumer.close()
    stamps = [m.timestamp()[1] for msgs in got.values() for m in msgs if m.key() == rollout.encode()]
    if not stamps:
        raise ReplayError(f"no plan for rollout {rollout!r} on {settings.topic('rollouts')}")
    start = min(stamps) - policy.lookback_windows * policy.window_ms
    return TimeRange(start, max(now_ms(), max(stamps) + 1))


def build_report(
    settings: Settings,
    rollout: str,
    outdir: Path,
    start: str | None,
    end: str | None,
    file: str | None,
    policy_path: str | None,
) -> Path:
    from streams.replay.session import live_policy, load_capture, other_policy, run

    policy = other_policy(policy_path) if policy_path else live_policy(settings)
    trange = TimeRange.parse(start, end) if (start or end) else None
    if trange is None and not file:
        trange = _rollout_range(settings, rollout, policy)
    cap = load_capture(settings, trange, file, lazy=True)
    tl = run(settings, cap, policy, rollout, health=True)
    if not tl.plans:
        raise ReplayError(f"rollout {rollout!r} has no plan up to {format_ms(cap.trange.end_ms)}")
    outdir.mkdir(parents=True, exist_ok=True)
    data = report_data(rollout, cap, tl)
    write_csv(outdir / "metrics.csv", tl.health.values())
    try:
        write_parquet(outdir, rollout, cap, tl)
    except ReplayError as exc:  # pyarrow missing: the HTML and CSV are still worth having
        print(f"note: {exc}; metrics.parquet and decisions.parquet skipped", file=sys.stderr)
    page = outdir / "index.html"
    write_html(page, data)
    return page


def write_parquet(outdir: Path, rollout: str, cap: Capture, tl: Timeline) -> None:
    """``metrics.parquet`` (the CSV's rows) and ``decisions.parquet`` (replay, live, operator)."""
    from streams.replay import parquet

    parquet.require_pyarrow()
    rows, metrics, counts = health_table(tl.health.values())
    parquet.write_metrics(outdir / "metrics.parquet", rows, metrics, counts)
    live, ops, _ = live_decisions(cap.control, rollout)
    pairs = (
        [("replay", d) for d in tl.decisions] + [("live", d) for d in live] + [("operator", d) for d in ops]
    )
    parquet.write_decisions(outdir / "decisions.parquet", pairs)


def report_data(rollout: str, cap: Capture, tl: Timeline) -> dict[str, Any]:
    live, ops, _ = live_decisions(cap.control, rollout)
    pol = tl.policy
    plans = [
        {
            "t": ts,
            "stage": p.current_stage,
            "state": p.state.value,
            "stages": [s.name for s in p.stages],
            "target": p.target_version,
            "previous": p.previous_version,
        }
        for ts, p in tl.plans
    ]
    rules = [
        {
            "id": r.id,
            "metric": r.metric.value
            + (f"_p{round(r.quantile * 100)}" if r.metric.value == "command_latency" else ""),
            "direction": r.direction,
            "threshold": r.threshold,
            "relative": r.relative,
            "action": r.action.value,
        }
        for r in pol.rules
    ]
    health = [
        {
            "stage": h.stage,
            "stage_name": h.stage_name,
            "baseline": h.is_baseline,
            "start": h.window_start_ms,
            "end": h.window_end_ms,
            "expected": h.devices_expected,
            "reporting": h.devices_reporting,
            "metrics": dict(h.metrics),
            "late": h.counts.get("late_events", 0),
            "decode_errors": h.counts.get("decode_errors", 0),
        }
        for h in sorted(tl.health.values(), key=lambda h: (h.stage, h.is_baseline, h.window_start_ms))
    ]

    def dj(ds: list[Decision], origin: str) -> list[dict[str, Any]]:
        return [decision_json(d, origin) for d in sorted(ds, key=lambda d: d.window_end_ms)]

    return {
        "rollout": rollout,
        "range": [cap.trange.start_ms, cap.trange.end_ms],
        "source": cap.source,
        "policy": {
            "version": pol.version,
            "window_ms": pol.window_ms,
            "lateness_ms": pol.allowed_lateness_ms,
        },
        "rules": rules,
        "plans": plans,
        "health": health,
        "decisions": dj(tl.decisions, "replay"),
        "live": dj(live, "live"),
        "operator": dj(ops, "operator"),
        "dead_letters": [
            {"topic": d.topic, "reason": d.reason, "start": d.window_start_ms, "count": d.count}
            for d in tl.dead_letters
        ],
        "events": tl.events,
        "devices": tl.devices,
        "notes": tl.notes,
    }


def health_table(health: Iterable[CohortHealth]) -> tuple[list[CohortHealth], list[str], list[str]]:
    """Rows in report order, and the metric and count names (the columns after the fixed ones)."""
    rows = sorted(health, key=lambda h: (h.rollout_id, h.stage, h.is_baseline, h.window_start_ms))
    return rows, sorted({k for h in rows for k in h.metrics}), sorted({k for h in rows for k in h.counts})


def write_csv(path: Path, health: Iterable[CohortHealth]) -> int:
    rows, metrics, counts = health_table(health)
    head = [
        "rollout_id",
        "stage",
        "stage_name",
        "cohort",
        "firmware_version",
        "window_start",
        "window_end",
        "window_start_ms",
        "window_end_ms",
        "devices_expected",
        "devices_reporting",
    ]
    with path.open("w", newline="", encoding="utf-8") as fo:
        w = csv.writer(fo)
        w.writerow(head + metrics + [f"count_{c}" for c in counts])
        for h in rows:
            w.writerow(
                [
                    h.rollout_id,
                    h.stage,
                    h.stage_name,
                    "baseline" if h.is_baseline else "treated",
                    h.firmware_version,
                    format_ms(h.window_start_ms),
                    format_ms(h.window_end_ms),
                    h.window_start_ms,
                    h.window_end_ms,
                    h.devices_expected,
                    h.devices_reporting,
                ]
                + [_num(h.metrics.get(m)) for m in metrics]
                + [h.counts.get(c, "") for c in counts]
            )
    return len(rows)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def write_html(path: Path, data: dict[str, Any]) -> None:
    # JSON inside <script>: escape '<' so no '</script>' in the data can end the element
    blob = json.dumps(data, sort_keys=True).replace("<", "\\u003c")
    title = html.escape(f"fleetgate incident report: {data['rollout']}")
    path.write_text(PAGE.replace("__TITLE__", title).replace("__DATA__", blob), encoding="utf-8")
