"""CohortHealth snapshots: the per-window numbers behind a decision, for dashboards."""

from __future__ import annotations

from gates.aggregates import WindowAggregate
from gates.events import CohortHealth, RolloutPlan

__all__ = ["cohort_health"]


def cohort_health(
    plan: RolloutPlan,
    stage: int,
    idx: int,
    treated: WindowAggregate,
    base: WindowAggregate,
    cum: WindowAggregate,
    window_ms: int,
) -> list[CohortHealth]:
    """Health of a stage's treated cohort and of its baseline in one window."""
    out = []
    for agg, is_base in ((treated, False), (base, True)):
        metrics: dict[str, float] = {}
        if agg.expected_milli:
            metrics["telemetry_continuity"] = agg.reporting * 1000 / agg.expected_milli
        if agg.reports:
            metrics["reboot_rate"] = agg.reboots / agg.reports
            for k, (carrying, expected) in agg.presence().items():
                metrics[f"metric_presence:{k}"] = carrying / expected
        if agg.population:
            metrics["offline_share"] = agg.offline / agg.population
        if agg.reporting:
            hours = agg.reporting * window_ms / 3_600_000
            metrics["reconnect_rate"] = agg.reconnects / hours
            metrics["error_rate"] = agg.errors / hours
        if agg.latency is not None and agg.latency.count:
            metrics["command_latency_p95"] = agg.latency.quantile(0.95) or 0.0
        if not is_base:
            if cum.terminal:
                metrics["ack_failure_rate"] = cum.failures / cum.terminal
            if agg.stage_devices:
                metrics["coverage"] = agg.stage_healthy / agg.stage_devices
        counts = {k: v for k, v in agg.to_dict().items() if isinstance(v, int)}
        out.append(
            CohortHealth(
                rollout_id=plan.rollout_id,
                stage=stage,
                stage_name=plan.stages[stage].name,
                firmware_version=plan.previous_version if is_base else plan.target_version,
                is_baseline=is_base,
                window_start_ms=idx * window_ms,
                window_end_ms=(idx + 1) * window_ms,
                devices_expected=round(agg.expected_milli / 1000),
                devices_reporting=agg.reporting,
                metrics=metrics,
                counts=counts,
            )
        )
    return out
