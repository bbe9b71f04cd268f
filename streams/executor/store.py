"""Redis persistence of the executor: every key under ``{namespace}:executor:`` / ``{namespace}:versions:``.

Each state change is one MULTI/EXEC transaction (see :meth:`ExecutorStore.tx`), so a
crash never leaves a half-applied stage: the new rollout status, the decision id marked
seen, the stage's commands and their outbox entries, and the devices' desired versions
are written together or not at all.

Keys (``ns`` = ``settings.redis_namespace``):

=====================================  ======  ===================================================
``ns:executor:rollouts``               set     rollout ids the executor owns
``ns:executor:rollout:{rid}``          hash    status: spec, state, current_stage, updated_at_ms,
                                               acted_windows, rollback_stages, last_decision_id
``ns:executor:plan-def:{rid}``         string  plan definition submitted by ``rollout start``
``ns:executor:seen:{rid}``             set     decision ids already acted on (or ignored)
``ns:executor:commands:{rid}``         hash    command id -> command JSON (every command issued)
``ns:executor:outbox``                 hash    command id -> rollout id: persisted, delivery not
                                               yet confirmed by the broker
``ns:executor:rollback:{rid}``         hash    device -> pending|queued|done|held:<why>|failed:<code>
``ns:executor:queued:{rid}``           hash    device -> rollback command id, waiting for the
                                               device to reconnect
``ns:executor:ignored``                hash    reason -> count of ignored decisions
``ns:versions:device:{id}``            hash    fw_/cfg_ desired and reported, ack_*, seen_ms
``ns:versions:devices``                set     devices with a version-map entry
=====================================  ======  ===================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from gates.events import CommandKind, DeviceCommand, RolloutState, TargetKind
from streams.executor.machine import RolloutStatus
from streams.executor.plans import PlanSpec
from streams.executor.slice_stops import stops_from_json, stops_to_json

__all__ = ["ExecutorStore", "Keys", "command_from_json", "command_to_json", "version_field"]


class Keys:
    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.rollouts = f"{ns}:executor:rollouts"
        self.outbox = f"{ns}:executor:outbox"
        self.ignored = f"{ns}:executor:ignored"
        self.version_devices = f"{ns}:versions:devices"

    def rollout(self, rid: str) -> str:
        return f"{self.ns}:executor:rollout:{rid}"

    def plan_def(self, rid: str) -> str:
        return f"{self.ns}:executor:plan-def:{rid}"

    def seen(self, rid: str) -> str:
        return f"{self.ns}:executor:seen:{rid}"

    def commands(self, rid: str) -> str:
        return f"{self.ns}:executor:commands:{rid}"

    def rollback(self, rid: str) -> str:
        return f"{self.ns}:executor:rollback:{rid}"

    def queued(self, rid: str) -> str:
        return f"{self.ns}:executor:queued:{rid}"

    def versions(self, device_id: str) -> str:
        return f"{self.ns}:versions:device:{device_id}"

    def gate_status(self, rid: str) -> str:
        return f"{self.ns}:status:{rid}"


def version_field(kind: TargetKind, what: str) -> str:
    """``fw_desired`` / ``cfg_reported`` ... for a target kind."""
    return f"{'fw' if kind is TargetKind.FIRMWARE else 'cfg'}_{what}"


def command_to_json(c: DeviceCommand) -> str:
    return json.dumps(
        [c.command_id, c.device_id, c.rollout_id, c.stage, c.kind.value, c.target_kind.value,
         c.target_version, c.issued_at_ms],
        separators=(",", ":"),
    )  # fmt: skip


def command_from_json(raw: str | bytes) -> DeviceCommand:
    c = json.loads(raw)
    return DeviceCommand(c[0], c[1], c[2], int(c[3]), CommandKind(c[4]), TargetKind(c[5]), c[6], int(c[7]))


def _s(v: bytes | str | None) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")


class ExecutorStore:
    """Typed access to the executor's Redis keys; writes go through :meth:`tx` transactions."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.keys = Keys(namespace)

    @classmethod
    def from_url(cls, url: str, namespace: str) -> ExecutorStore:
        # Timeouts: a frozen or vanished Redis raises (and is ridden out, Executor.run) instead of hanging.
        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), namespace)

    def tx(self) -> Any:
        """A MULTI/EXEC pipeline: queue writes on it, then ``execute()`` applies all or none."""
        return self.client.pipeline(transaction=True)

    # ------------------------------------------------------------- definitions
    def save_definition(self, spec: PlanSpec) -> str:
        digest = spec.digest()
        self.client.set(
            self.keys.plan_def(spec.rollout_id), json.dumps({"spec": spec.to_dict(), "digest": digest})
        )
        return digest

    def load_definition(self, rid: str) -> tuple[PlanSpec, str] | None:
        raw = self.client.get(self.keys.plan_def(rid))
        if raw is None:
            return None
        d = json.loads(raw)
        return PlanSpec.from_dict(d["spec"]), d["digest"]

    # ------------------------------------------------------------------ status
    def put_status(self, pipe: Any, st: RolloutStatus) -> None:
        rid = st.spec.rollout_id
        pipe.sadd(self.keys.rollouts, rid)
        pipe.hset(
            self.keys.rollout(rid),
            mapping={
                "spec": json.dumps(st.spec.to_dict(), sort_keys=True),
                "state": st.state.value,
                "current_stage": st.current_stage,
                "updated_at_ms": st.updated_at_ms,
                "acted_windows": json.dumps({str(k): v for k, v in sorted(st.acted_windows.items())}),
                "rollback_stages": json.dumps(list(st.rollback_stages)),
                "last_decision_id": st.last_decision_id,
                "slice_stops": json.dumps(stops_to_json(st.slice_stops), sort_keys=True),
            },
        )

    def load_status(self, rid: str) -> RolloutStatus | None:
        raw = self.client.hgetall(self.keys.rollout(rid))
        if not raw:
            return None
        h = {_s(k): _s(v) for k, v in raw.items()}
        return RolloutStatus(
            spec=PlanSpec.from_dict(json.loads(h["spec"])),
            state=RolloutState(h["state"]),
            current_stage=int(h["current_stage"]),
            updated_at_ms=int(h["updated_at_ms"]),
            acted_windows={int(k): int(v) for k, v in json.loads(h["acted_windows"]).items()},
            rollback_stages=tuple(json.loads(h["rollback_stages"])),
            last_decision_id=h.get("last_decision_id", ""),
            slice_stops=stops_from_json(json.loads(h.get("slice_stops", "[]"))),
        )

    def rollout_ids(self) -> list[str]:
        return sorted(_s(m) for m in self.client.smembers(self.keys.rollouts))

    def load_all(self) -> dict[str, RolloutStatus]:
        out = {}
        for rid in self.rollout_ids():
            st = self.load_status(rid)
            if st is not None:
                out[rid] = st
        return out

    # --------------------------------------------------------------- decisions
    def seen(self, rid: str, decision_id: str) -> bool:
        return bool(self.client.sismember(self.keys.seen(rid), decision_id))

    def mark_seen(self, pipe: Any, rid: str, decision_id: str) -> None:
        pipe.sadd(self.keys.seen(rid), decision_id)

    def count_ignored(self, pipe: Any, reason: str) -> None:
        pipe.hincrby(self.keys.ignored, reason, 1)

    # ---------------------------------------------------------------- commands
    def put_commands(self, pipe: Any, cmds: Iterable[DeviceCommand], outbox: bool = True) -> None:
        by_rid: dict[str, dict[str, str]] = {}
        desired: list[DeviceCommand] = []
        for c in cmds:
            by_rid.setdefault(c.rollout_id, {})[c.command_id] = command_to_json(c)
            desired.append(c)
        for rid, mapping in by_rid.items():
            pipe.hset(self.keys.commands(rid), mapping=mapping)
            if outbox:
                pipe.hset(self.keys.outbox, mapping=dict.fromkeys(mapping, rid))
        self.put_desired(pipe, desired)

    def put_desired(self, pipe: Any, cmds: Iterable[DeviceCommand]) -> None:
        ids = []
        for c in cmds:
            pipe.hset(
                self.keys.versions(c.device_id), version_field(c.target_kind, "desired"), c.target_version
            )
            ids.append(c.device_id)
        if ids:
            pipe.sadd(self.keys.version_devices, *ids)

    def outbox(self) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.client.hgetall(self.keys.outbox).items()}

    def load_commands(self, rid: str, ids: Iterable[str] | None = None) -> list[DeviceCommand]:
        key = self.keys.commands(rid)
        if ids is None:
            raws = self.client.hvals(key)
        else:
            wanted = list(ids)
            raws = [r for r in self.client.hmget(key, wanted) if r is not None] if wanted else []
        return [command_from_json(r) for r in raws]

    def command(self, rid: str, cid: str) -> DeviceCommand | None:
        raw = self.client.hget(self.keys.commands(rid), cid)
        return command_from_json(raw) if raw is not None else None

    def confirm_delivered(self, cids: Iterable[str]) -> None:
        ids = list(cids)
        if ids:
            self.client.hdel(self.keys.outbox, *ids)

    # ---------------------------------------------------------------- rollback
    def rollback_states(self, rid: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.client.hgetall(self.keys.rollback(rid)).items()}

    def queued(self, rid: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.client.hgetall(self.keys.queued(rid)).items()}

    def ignored_counts(self) -> dict[str, int]:
        return {_s(k): int(v) for k, v in self.client.hgetall(self.keys.ignored).items()}

    # ---------------------------------------------------------------- versions
    def read_versions(self, device_ids: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for start in range(0, len(device_ids), 1000):
            chunk = device_ids[start : start + 1000]
            pipe = self.client.pipeline(transaction=False)
            for d in chunk:
                pipe.hgetall(self.keys.versions(d))
            for d, raw in zip(chunk, pipe.execute(), strict=True):
                out[d] = {_s(k): _s(v) for k, v in raw.items()}
        return out

    def gate_status(self, rid: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.client.hgetall(self.keys.gate_status(rid)).items()}
