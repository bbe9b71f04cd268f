"""Live terminal view of one rollout (rich) and the end-of-run summary.

Reads only: the executor's state and version map (Redis), the gate's status hash (Redis) and
every decision on ``rollout-control`` (Kafka, from the beginning, no consumer group commits).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gates.events import Action, Decision, RolloutState
from streams.codecs import Decoder
from streams.config import Settings
from streams.demo.outcome import Outcome
from streams.executor.report import rollout_versions
from streams.executor.store import ExecutorStore

__all__ = ["DecisionReader", "render_summary", "signed_by", "watch"]

_STYLE = {"PROCEED": "green", "HOLD": "yellow", "PAUSE": "bold magenta", "ROLLBACK": "bold red"}
_TERMINAL = (RolloutState.COMPLETED, RolloutState.ROLLED_BACK)


class DecisionReader:
    """Every decision on the control topic, read from the beginning, incrementally."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic("rollout-control")
        self.consumer = Consumer(
            settings.kafka_client_config()
            | {"group.id": f"{settings.group_id}-demo-watch", "enable.auto.commit": False}
        )
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(parts)])
        self.decoder = Decoder.output()
        self.decisions: list[Decision] = []
        self._ids: set[str] = set()

    def poll(self, timeout_s: float = 0.2) -> list[Decision]:
        new: list[Decision] = []
        while True:
            msgs = [m for m in self.consumer.consume(500, timeout=timeout_s) if m.error() is None]
            if not msgs:
                break
            records, _errors = self.decoder.decode_batch(msgs)
            for r in records:
                if isinstance(r, Decision) and r.decision_id not in self._ids:
                    self._ids.add(r.decision_id)
                    new.append(r)
            timeout_s = 0.0
        self.decisions.extend(new)
        return new

    def close(self) -> None:
        self.consumer.close()


def signed_by(d: Decision, keys: Any) -> str:
    """The key that signed ``d`` if it verifies with public keys only (as any subscriber can check)
    as the signer ``d`` names, else why not.  Age is not judged here."""
    from streams.security import verify_decision

    v = verify_decision(d, keys, now_ms=d.watermark_ms, max_age_ms=2**62, max_skew_ms=2**62)
    return str(d.key_id) if v.ok else f"NOT VERIFIED: {v.rejection}"


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def reason_text(d: Decision, limit: int = 3) -> str:
    """The reasons that matter: breaches, else pending rules, else the proceed/coverage line."""
    if d.note:
        return f"{d.operator}: {d.note}"
    breach = [r for r in d.reasons if r.verdict == "breach"]
    pick = breach or [r for r in d.reasons if r.verdict == "pending" and r.rule_id != "proceed"]
    if not pick:
        pick = [r for r in d.reasons if r.rule_id == "proceed"]
    parts = []
    for r in pick[:limit]:
        obs = "-" if r.observed is None else f"{r.observed:.3g}"
        base = "" if r.baseline is None else f" vs {r.baseline:.3g}"
        thr = "" if r.threshold is None else f" (threshold {r.threshold:.3g})"
        parts.append(f"{r.metric} {r.verdict}: {obs}{base}{thr}, n={r.sample_size}")
    more = len(pick) - limit
    return "; ".join(parts) + (f"; +{more} more" if more > 0 else "")


def _stage_table(store: ExecutorStore, rollout_id: str, decisions: list[Decision]) -> Table:
    st = store.load_status(rollout_id)
    t = Table(title="stages", expand=True)
    for col in ("#", "stage", "devices", "commanded", "on new version", "on previous", "rollback", "gate"):
        t.add_column(col, justify="right" if col not in ("stage", "gate", "rollback") else "left")
    if st is None:
        return t
    rows = rollout_versions(store, rollout_id)
    last: dict[int, Decision] = {}
    for d in decisions:
        if d.rollout_id == rollout_id:
            last[d.stage] = d
    for row in rows:
        s = row["stage"]
        if s < 0:
            continue
        rb = ", ".join(
            f"{k.removeprefix('rollback_')} {v}" for k, v in row.items() if k.startswith("rollback_")
        )
        latest = last.get(s)
        gate = Text(latest.action.value, style=_STYLE.get(latest.action.value, "")) if latest else Text("-")
        marker = "▶ " if s == st.current_stage and st.state not in _TERMINAL else ""
        t.add_row(
            str(s),
            marker + row["name"],
            str(row["devices"]),
            str(row["desired"]),
            str(row["reported"]),
            str(row["previous"]),
            rb or "-",
            gate,
        )
    return t


def _decision_table(rollout_id: str, decisions: list[Decision], limit: int = 12) -> Table:
    t = Table(title="decisions (latest last)", expand=True)
    for col in ("window end", "stage", "action", "from", "why"):
        t.add_column(col, overflow="fold")
    mine = [d for d in decisions if d.rollout_id == rollout_id]
    for d in mine[-limit:]:
        t.add_row(
            _ts(d.window_end_ms),
            f"{d.stage} {d.stage_name}",
            Text(d.action.value, style=_STYLE.get(d.action.value, "")),
            d.source.value.lower(),
            reason_text(d),
        )
    return t


def _header(store: ExecutorStore, rollout_id: str, title: str, started: float) -> Text:
    st = store.load_status(rollout_id)
    gate = store.gate_status(rollout_id)
    state = "waiting for the executor" if st is None else f"{st.state.value} at stage {st.current_stage}"
    wm = gate.get("watermark_ms")
    lag = f", gate watermark {_ts(int(wm))}" if wm else ""
    return Text(
        f"{title}  |  {rollout_id}: {state}{lag}  |  {time.monotonic() - started:5.1f} s", style="bold"
    )


def watch(
    settings: Settings,
    rollout_id: str,
    *,
    title: str = "fleetgate demo",
    timeout_s: float = 150.0,
    settle_s: float = 3.0,
    console: Console | None = None,
    alive: Callable[[], str | None] | None = None,
) -> tuple[str, list[Decision]]:
    """Show the rollout live until it is COMPLETED / ROLLED_BACK (or PAUSED for ``settle_s``).

    Returns ``(final state or "TIMEOUT" / "DIED: ...", decisions)``.  ``alive()`` returns a
    message when a process the demo depends on has died.
    """
    console = console or Console()
    store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
    reader = DecisionReader(settings)
    started = time.monotonic()
    paused_since: float | None = None
    result = "TIMEOUT"
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while time.monotonic() - started < timeout_s:
                reader.poll()
                st = store.load_status(rollout_id)
                live.update(
                    Panel(
                        Group(
                            _header(store, rollout_id, title, started),
                            _stage_table(store, rollout_id, reader.decisions),
                            _decision_table(rollout_id, reader.decisions),
                        )
                    )
                )
                if alive is not None and (dead := alive()):
                    result = f"DIED: {dead}"
                    break
                if st is not None and st.state in _TERMINAL:
                    result = st.state.value
                    break
                if st is not None and st.state is RolloutState.PAUSED:
                    paused_since = paused_since or time.monotonic()
                    if time.monotonic() - paused_since >= settle_s:
                        result = st.state.value
                        break
                else:
                    paused_since = None
                time.sleep(0.5)
        reader.poll(0.5)
    finally:
        reader.close()
    return result, reader.decisions


def render_summary(
    console: Console,
    rollout_id: str,
    decisions: list[Decision],
    outcome: Outcome | None,
    extra: dict[str, Any],
    keys: Any = None,
) -> None:
    """What was decided and why, and whether it is what the scenario's ground truth expects.

    With ``keys`` (public keys), each decision's signature is verified and its key shown."""
    t = Table(title=f"what was decided, and why ({rollout_id})", expand=True)
    for col in ("window", "stage", "action", "from", "id", "key", "reasons"):
        t.add_column(col, overflow="fold")
    for d in decisions:
        if d.rollout_id != rollout_id:
            continue
        t.add_row(
            f"{_ts(d.window_start_ms)}-{_ts(d.window_end_ms)}",
            f"{d.stage} {d.stage_name}",
            Text(d.action.value, style=_STYLE.get(d.action.value, "")),
            d.source.value.lower() + (f" ({d.operator})" if d.operator else ""),
            d.decision_id[:12],
            signed_by(d, keys) if keys is not None else "-",
            reason_text(d, limit=4),
        )
    console.print(t)
    if outcome is None:
        return
    o = outcome.to_dict()
    lines = [
        f"scenario {o['scenario']}: executor {o['state']} at stage {o['current_stage']}",
        f"bad stage (from the truth file): {o['bad_stage']}",
    ]
    if o["stopping"]:
        s = o["stopping"]
        lines.append(
            f"stopped by a {s['source'].lower()} {s['action']} of stage {s['stage']}, "
            f"{o['windows_to_stop']} windows after the stage was dispatched"
        )
        if s["culprits"]:
            lines.append("culprit slices: " + ", ".join(s["culprits"]))
    if o["rollback"]:
        lines.append("rollback targets: " + ", ".join(f"{k} {v}" for k, v in o["rollback"].items()))
    for row in o["per_stage"]:
        lines.append(
            f"  stage {row['stage']} {row['name']}: {row['devices']} devices, {row['commanded']} commanded, "
            f"{row['on_target']} on the new version, {row['rollback_commands']} rolled back, "
            f"{row['affected']} in the bad cohort"
        )
    lines += [f"{k}: {v}" for k, v in extra.items()]
    if outcome.ok:
        lines.append("[bold green]OK: the outcome matches the ground truth[/]")
    else:
        lines += [f"[bold red]PROBLEM[/]: {p}" for p in outcome.problems]
    console.print(Panel("\n".join(lines), title="outcome"))


def rollback_action(decisions: list[Decision], rollout_id: str) -> Decision | None:
    return next((d for d in decisions if d.rollout_id == rollout_id and d.action is Action.ROLLBACK), None)
