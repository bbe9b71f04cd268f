"""What an alert is: a gate or operator decision turned into an Alertmanager alert (pure).

A PAUSE or ROLLBACK opens one alert per decision; its labels carry the decision id, so the
same decision consumed twice (a redelivery, or a decision re-published after a worker
restart, which keeps its id) is the same Alertmanager alert, never a second one.  A PROCEED
of the same (rollout, stage), from the gate or an operator's resume, resolves every alert
open on that stage.  No clock, no I/O: callers pass the times in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gates.events import Action, Decision, DecisionSource, Reason

__all__ = ["ALERTNAMES", "Alert", "AlertBook", "alert_for", "culprit", "is_start", "iso"]

ALERTNAMES = {Action.PAUSE: "FleetgateRolloutPaused", Action.ROLLBACK: "FleetgateRolloutRolledBack"}
_SEVERITY = {Action.PAUSE: "warning", Action.ROLLBACK: "critical"}
_START_PREFIX = "start:"  # streams.executor.machine.START_PREFIX (not imported: keeps this module pure)


def iso(ms: int) -> str:
    """RFC 3339 in UTC, millisecond precision, as Alertmanager expects."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_start(d: Decision) -> bool:
    return d.source is DecisionSource.OPERATOR and (d.note or "").startswith(_START_PREFIX)


def culprit(d: Decision) -> Reason | None:
    """The first breached rule: the engine lists reasons in policy order, so this is stable."""
    return next((r for r in d.reasons if r.verdict == "breach"), None)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as fleetgate tracks it; ``resolved_by`` is set once a PROCEED closed it."""

    decision_id: str
    rollout_id: str
    stage: int
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_ms: int
    ends_at_ms: int
    resolved_by: str = ""

    @property
    def status(self) -> str:
        return "resolved" if self.resolved_by else "firing"

    def resolve(self, by: str, at_ms: int) -> Alert:
        notes = self.annotations | {"resolved_by": by}
        return replace(self, ends_at_ms=max(at_ms, self.starts_at_ms), resolved_by=by, annotations=notes)

    def to_alertmanager(self) -> dict[str, Any]:
        """One element of the ``POST /api/v2/alerts`` body (postableAlert)."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": iso(self.starts_at_ms),
            "endsAt": iso(self.ends_at_ms),
        }

    def to_webhook(self) -> dict[str, Any]:
        """The generic webhook body: flat, with a key a receiver can de-duplicate on."""
        return {
            "version": "1",
            "status": self.status,
            "dedup_key": f"{self.decision_id}:{self.status}",
            "decision_id": self.decision_id,
            "rollout_id": self.rollout_id,
            "stage": self.stage,
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": iso(self.starts_at_ms),
            "ends_at": iso(self.ends_at_ms),
            "resolved_by": self.resolved_by or None,
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "decision_id": self.decision_id,
                "rollout_id": self.rollout_id,
                "stage": self.stage,
                "labels": self.labels,
                "annotations": self.annotations,
                "starts_at_ms": self.starts_at_ms,
                "ends_at_ms": self.ends_at_ms,
                "resolved_by": self.resolved_by,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        return cls(**json.loads(raw))


def _reason_text(r: Reason) -> str:
    observed = "n/a" if r.observed is None else f"{r.observed:.4g}"
    baseline = "" if r.baseline is None else f" baseline {r.baseline:.4g}"
    fw = f" fw {r.firmware_version}" if r.firmware_version else ""
    detail = f" ({r.detail})" if r.detail else ""
    return (
        f"{r.verdict} {r.rule_id}: {r.metric} {observed}{baseline} threshold {r.threshold:.4g} "
        f"n={r.sample_size}{fw}{detail}"
    )


def _slice(d: Decision, r: Reason | None) -> str:
    # Decisions do not name a slice (a sub-population such as one device model) yet; read it
    # from the culprit reason or the decision once they do, so the label needs no migration.
    for obj in (r, d):
        value = getattr(obj, "slice", None) if obj is not None else None
        if value:
            return str(value)
    return ""


def alert_for(d: Decision, starts_at_ms: int, ttl_ms: int) -> Alert:
    """The alert a PAUSE or ROLLBACK opens.  ``ttl_ms``: how long it fires unless resolved."""
    if d.action not in ALERTNAMES:
        raise ValueError(f"decision {d.decision_id}: {d.action.value} opens no alert")
    r = culprit(d)
    rule = r.rule_id if r else ("operator" if d.source is DecisionSource.OPERATOR else "")
    labels = {
        "alertname": ALERTNAMES[d.action],
        "severity": _SEVERITY[d.action],
        "rollout": d.rollout_id,
        "stage": str(d.stage),
        "stage_name": d.stage_name,
        "action": d.action.value,
        "source": d.source.value,
        "rule": rule,
        "slice": _slice(d, r),
        "firmware": (r.firmware_version or "") if r else "",
        "policy_version": d.policy_version,
        "decision_id": d.decision_id,
    }
    # Alertmanager drops empty label values; dropping them here keeps both views identical.
    labels = {k: v for k, v in labels.items() if v}
    who = f" by {d.operator}" if d.operator else ""
    why = _reason_text(r) if r else (d.note or "no breached rule named")
    annotations = {
        "summary": f"{d.action.value} of rollout {d.rollout_id} stage {d.stage} ({d.stage_name}){who}: {why}",
        "description": "\n".join(_reason_text(x) for x in d.reasons) or (d.note or ""),
        "reasons": json.dumps([_reason_dict(x) for x in d.reasons], sort_keys=True),
        "window": f"{iso(d.window_start_ms)}/{iso(d.window_end_ms)}",
        "engine_version": d.engine_version,
    }
    if d.operator:
        annotations["operator"] = d.operator
    if d.note:
        annotations["note"] = d.note
    return Alert(
        d.decision_id, d.rollout_id, d.stage, labels, annotations, starts_at_ms, starts_at_ms + ttl_ms
    )


def _reason_dict(r: Reason) -> dict[str, Any]:
    return asdict(r)


@dataclass
class AlertBook:
    """Open alerts and the ids of resolved ones, as the forwarder knows them.

    :meth:`on_decision` returns the alerts to send (new or resolved).  A decision whose alert
    was already resolved is not re-opened: a copy of it read after the PROCEED is old news.
    """

    open: dict[str, Alert] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)  # decision id -> resolved at (ms)

    def on_decision(self, d: Decision, at_ms: int, ttl_ms: int) -> list[Alert]:
        if d.action in ALERTNAMES:
            if d.decision_id in self.resolved:
                return []
            alert = self.open.get(d.decision_id) or alert_for(d, at_ms, ttl_ms)
            self.open[d.decision_id] = alert
            return [alert]
        if d.action is Action.PROCEED and not is_start(d):
            done = [
                a.resolve(d.decision_id, at_ms)
                for a in self.open.values()
                if a.rollout_id == d.rollout_id and a.stage == d.stage
            ]
            for a in done:
                del self.open[a.decision_id]
                self.resolved[a.decision_id] = a.ends_at_ms
            return done
        return []  # HOLD, and an operator start: nothing to alert or resolve

    def expire(self, now_ms: int, keep_resolved_ms: int) -> list[str]:
        """Forget alerts past their end and resolved ids older than ``keep_resolved_ms``."""
        gone = [k for k, a in self.open.items() if a.ends_at_ms <= now_ms]
        for k in gone:
            del self.open[k]
        old = [k for k, t in self.resolved.items() if t + keep_resolved_ms <= now_ms]
        for k in old:
            del self.resolved[k]
        return gone + old
