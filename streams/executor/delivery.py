"""What the executor produces: device commands out of the outbox, and plans to ``rollouts``.

A command is persisted in the outbox (``streams/executor/store.py``) before it is produced
and removed only once the broker has confirmed it, so whatever is still there after a crash
or a failed delivery is produced again with the same id.  Every plan published carries the
executor's whole status (:func:`streams.executor.rebuild.status_header`).  Separate from the
decision and feed handlers because both of them, and recovery, send through it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from gates.events import DeviceCommand
from streams.executor.faults import FaultPoint, armed, crash_at
from streams.executor.machine import RolloutStatus
from streams.executor.rebuild import status_header

if TYPE_CHECKING:
    from streams.executor.runner import Executor

__all__ = ["deliver", "flush_outbox", "publish_plan"]


def deliver(ex: Executor, cmds: list[DeviceCommand]) -> None:
    """Produce commands, wait for the broker, then remove them from the outbox."""
    if not cmds:
        return
    mid = FaultPoint.MID_DELIVERY
    if len(cmds) > 1 and armed(mid, ex.faults):
        half = cmds[: len(cmds) // 2]
        _produce_and_confirm(ex, half)
        crash_at(mid, ex.faults)
    _produce_and_confirm(ex, cmds)


def _produce_and_confirm(ex: Executor, cmds: list[DeviceCommand]) -> None:
    delivered: list[str] = []
    failed: list[str] = []

    def on_delivery(err: Any, msg: Any, cid: str) -> None:
        (failed if err is not None else delivered).append(cid)

    for c in cmds:
        value, headers = ex.encoder.encode(c, ex.framing, topic=ex.t_commands)
        while True:
            try:
                ex.producer.produce(
                    ex.t_commands, value=value, key=c.device_id.encode(), headers=headers,
                    on_delivery=functools.partial(on_delivery, cid=c.command_id),
                )  # fmt: skip
                break
            except BufferError:
                ex.producer.poll(0.1)
    ex.producer.flush(30)
    ex.store.confirm_delivered(delivered)
    ex.counts["commands_sent"] = ex.counts.get("commands_sent", 0) + len(delivered)
    if failed or len(delivered) < len(cmds):
        ex._log("commands_undelivered", count=len(cmds) - len(delivered), retry="next restart or step")


def publish_plan(ex: Executor, st: RolloutStatus) -> None:
    plan = st.spec.rollout_plan(st.current_stage, st.state, st.updated_at_ms)
    value, headers = ex.encoder.encode(plan, ex.framing, topic=ex.t_rollouts)
    headers = [*headers, status_header(st)]  # the record of the executor's state (rebuild.py)
    ex.producer.produce(ex.t_rollouts, value=value, key=st.spec.rollout_id.encode(), headers=headers)


def flush_outbox(ex: Executor) -> int:
    """Re-produce whatever is still in the outbox (e.g. after a delivery failure)."""
    outbox = ex.store.outbox()
    cmds: list[DeviceCommand] = []
    for rid in sorted(set(outbox.values())):
        cmds.extend(ex.store.load_commands(rid, [c for c, r in outbox.items() if r == rid]))
    deliver(ex, cmds)
    return len(cmds)
