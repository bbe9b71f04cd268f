"""Executor start and restart: state back into memory, the outbox re-sent, every plan re-published.

:func:`recover` runs before the first step and again after a Redis outage
(``streams/executor/outage.py``).  It first rebuilds from Kafka what Redis has lost
(``streams/executor/rebuild.py``), then loads every rollout's status and the devices whose
rollback is pending or queued, and re-produces exactly the commands still in the outbox
(persisted, never confirmed delivered); command ids are deterministic, so a command whose
confirmation was lost is re-sent with the same id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gates.events import RolloutState
from streams.executor.delivery import deliver, publish_plan
from streams.executor.rebuild import rebuild_lost_state, replay_feed
from streams.executor.slice_stops import has_rollbacks

if TYPE_CHECKING:
    from streams.executor.runner import Executor

__all__ = ["load_state", "recover"]


def recover(ex: Executor) -> None:
    """Load state (first rebuilt from Kafka if Redis lost it: streams/executor/rebuild.py),
    re-produce undelivered commands, re-publish every plan."""
    rebuilt = rebuild_lost_state(ex)
    load_state(ex)
    if rebuilt is not None:
        replay_feed(ex, rebuilt)
        ex._log(
            "rebuilt",
            rollouts=rebuilt.rollouts,
            seen=rebuilt.seen,
            commands=rebuilt.commands,
            inventory_devices=rebuilt.inventory_devices,
            feed_records=rebuilt.feed_records,
            seconds=round(rebuilt.seconds, 3),
        )
    ex.rebuilt = rebuilt
    outbox = ex.store.outbox()
    by_rid: dict[str, list[str]] = {}
    for cid, rid in outbox.items():
        by_rid.setdefault(rid, []).append(cid)
    resent = [c for rid, cids in sorted(by_rid.items()) for c in ex.store.load_commands(rid, cids)]
    deliver(ex, sorted(resent, key=lambda c: c.command_id))
    for st in ex.statuses.values():
        publish_plan(ex, st)
    ex.producer.flush(15)
    ex._log("recovered", rollouts=len(ex.statuses), resent=len(resent), queued=len(ex.queued))
    ex._recovered = True


def load_state(ex: Executor) -> None:
    """Statuses from Redis, and the devices waiting for a rollback (pending or queued)."""
    ex.statuses = ex.store.load_all()
    ex.pending_rollback.clear()
    ex.queued.clear()
    for rid, st in ex.statuses.items():
        if st.state is RolloutState.ROLLING_BACK or has_rollbacks(st.slice_stops):
            for dev, state in ex.store.rollback_states(rid).items():
                if state == "pending":
                    ex.pending_rollback.setdefault(dev, set()).add(rid)
            for dev, cid in ex.store.queued(rid).items():
                ex.queued.setdefault(dev, {})[rid] = cid
