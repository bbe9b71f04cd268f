"""Read-only views for the CLI: version distribution per stage, and a rollout's status."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gates.cohorts import RolloutInfo, attribute_tuple
from gates.events import AckStatus, RolloutState
from streams.executor.errors import UnknownRollout
from streams.executor.store import ExecutorStore, version_field
from streams.inventory import read_all_devices

__all__ = ["fleet_versions", "rollout_status", "rollout_versions"]


def rollout_versions(store: ExecutorStore, rollout_id: str) -> list[dict[str, Any]]:
    """One row per stage (and ``-`` for devices outside the rollout), counting devices by version.

    ``desired``/``reported``/``acknowledged`` count devices at the rollout's target version
    (desired: commanded; reported: telemetry or an APPLIED ack says so; acknowledged: an
    APPLIED ack for it); ``previous`` counts devices reporting the previous version and
    ``unknown`` devices with no reported version.
    """
    st = store.load_status(rollout_id)
    if st is None:
        raise UnknownRollout(f"no rollout {rollout_id!r}")
    spec = st.spec
    info = RolloutInfo(spec.rollout_plan(0, RolloutState.ACTIVE, 0))
    devices = read_all_devices(store.client, store.keys.ns)
    groups: dict[int, list[str]] = {}
    for a in devices:
        groups.setdefault(info.classify(a.device_id, attribute_tuple(a))[0], []).append(a.device_id)
    versions = store.read_versions([a.device_id for a in devices])
    rollback = store.rollback_states(rollout_id)
    want, rep = version_field(spec.target_kind, "desired"), version_field(spec.target_kind, "reported")
    rows = []
    for stage in [*range(len(spec.stages)), -1]:
        devs = groups.get(stage, [])
        c: Counter[str] = Counter()
        for d in devs:
            v = versions.get(d, {})
            c["desired"] += v.get(want) == spec.target_version
            c["reported"] += v.get(rep) == spec.target_version
            c["previous"] += v.get(rep) == spec.previous_version
            c["unknown"] += not v.get(rep)
            c["acknowledged"] += (
                v.get("ack_version") == spec.target_version and v.get("ack_status") == AckStatus.APPLIED.value
            )
            rb = rollback.get(d)
            if rb:
                c["rollback_" + rb.split(":")[0]] += 1
        rows.append(
            {
                "stage": stage,
                "name": spec.stages[stage].name if stage >= 0 else "(not in rollout)",
                "devices": len(devs),
                **{k: c[k] for k in ("desired", "reported", "acknowledged", "previous", "unknown")},
                **{k: v for k, v in sorted(c.items()) if k.startswith("rollback_")},
            }
        )
    return rows


def fleet_versions(store: ExecutorStore) -> list[dict[str, Any]]:
    """Fleet-wide: per (kind, version) the devices desiring, reporting and acknowledging it."""
    ids = sorted(
        {a.device_id for a in read_all_devices(store.client, store.keys.ns)} | _version_devices(store)
    )
    versions = store.read_versions(ids)
    rows: dict[tuple[str, str], Counter[str]] = {}
    for v in versions.values():
        for kind in ("fw", "cfg"):
            for what in ("desired", "reported"):
                ver = v.get(f"{kind}_{what}") or ("(unknown)" if what == "reported" else "")
                if ver:
                    rows.setdefault((kind, ver), Counter())[what] += 1
        if v.get("ack_status") == AckStatus.APPLIED.value and v.get("ack_version"):
            kind = "cfg" if v.get("ack_target") == "CONFIG" else "fw"
            rows.setdefault((kind, v["ack_version"]), Counter())["acknowledged"] += 1
    return [
        {
            "kind": "firmware" if k == "fw" else "config",
            "version": ver,
            **{x: c[x] for x in ("desired", "reported", "acknowledged")},
        }
        for (k, ver), c in sorted(rows.items())
    ]


def _version_devices(store: ExecutorStore) -> set[str]:
    return {
        m.decode() if isinstance(m, bytes) else m for m in store.client.smembers(store.keys.version_devices)
    }


def rollout_status(store: ExecutorStore, rollout_id: str) -> dict[str, Any]:
    st = store.load_status(rollout_id)
    if st is None:
        raise UnknownRollout(f"no rollout {rollout_id!r}")
    outbox = [c for c, r in store.outbox().items() if r == rollout_id]
    commands = store.load_commands(rollout_id)
    rollback = Counter(s for s in store.rollback_states(rollout_id).values())
    return {
        "rollout_id": rollout_id,
        "state": st.state.value,
        "current_stage": st.current_stage,
        "stage_name": st.spec.stages[st.current_stage].name,
        "stages": [s.name for s in st.spec.stages],
        "target": f"{st.spec.target_kind.value} {st.spec.previous_version} -> {st.spec.target_version}",
        "downgradable": st.spec.downgradable,
        "updated_at_ms": st.updated_at_ms,
        "last_decision_id": st.last_decision_id,
        "acted_windows": st.acted_windows,
        "commands": dict(Counter(f"{c.kind.value.lower()}_stage{c.stage}" for c in commands)),
        "commands_undelivered": len(outbox),
        "rollback_stages": list(st.rollback_stages),
        "rollback": dict(sorted(rollback.items())),
        "rollback_queued": len(store.queued(rollout_id)),
        "slice_stops": [s.to_json() for s in st.slice_stops],  # slices left out of later dispatches
        "ignored_decisions": store.ignored_counts(),
        "gate": store.gate_status(rollout_id) or None,
    }
