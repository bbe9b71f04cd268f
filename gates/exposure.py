"""The update funnel per device: commands and acks (commanded -> acked -> applied)."""

from __future__ import annotations

from gates.aggregates import VERSION_WIDE
from gates.clock import corrected
from gates.devices import CLEARED, COUNTED, DeviceState
from gates.events import Ack, AckStatus, CommandKind, DecodeErrorCount, DeviceCommand
from gates.telemetry_fold import TelemetryFold

__all__ = ["ExposureFold"]


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


class ExposureFold(TelemetryFold):
    def _ack(self, ev: Ack) -> None:
        dev = self._device(ev.device_id)
        t, skewed = corrected(dev, ev.event_time_ms, ev.ingest_time_ms, self._skew)
        rid = ev.rollout_id if ev.rollout_id is not None else self._unnamed_rollout(dev)
        if rid is None:
            return  # a legacy ack of a device no known rollout selected: nothing it could count for
        m = self._membership(dev, rid)
        exp = dev.exposure(rid)
        if exp is None:
            exp = self._exposure(dev, rid, m.treated_stage if m is not None else 0)
        info = self.rollouts.get(rid)
        # an ack never comes before its command (nor before its plan): a device clock behind
        # must not pull the stage's exposure to before the rollout existed
        floor = exp.commanded_at if exp.commanded_at is not None else (info.published_ms if info else None)
        if floor is not None and t < floor:
            t = floor
        version = info.target if info is not None else (ev.target_version or "")
        key = self._key(rid, exp.stage, version, False, self._slice(dev))
        idx = t // self._w
        agg = self._agg(idx, key)
        status = ev.status
        agg.ack_status[status.value] = agg.ack_status.get(status.value, 0) + 1
        if skewed:
            agg.clock_skew += 1
        if idx < self.closed:
            agg.late_events += 1
        if exp.acked_at is None or t < exp.acked_at:
            self._move(key, "acked", exp.acked_at, t)
            exp.acked_at = t
        if status.terminal:
            agg.terminal += 1
            if status.failure:
                agg.failures += 1
            exp.terminal_at = _min(exp.terminal_at, t)
            if exp.timeout_state == COUNTED and exp.commanded_at is not None:
                deadline = exp.commanded_at + self._profile(dev).ack_timeout_ms
                if t < deadline:
                    a = self._agg(deadline // self._w, key)
                    a.ack_timeouts -= 1
                    exp.timeout_state = CLEARED
        if status is AckStatus.APPLIED and (exp.applied_at is None or t < exp.applied_at):
            self._move(key, "applied", exp.applied_at, t)
            exp.applied_at = t

    def _unnamed_rollout(self, dev: DeviceState) -> str | None:
        """The rollout a legacy ack (it names none) answers: that of the device's latest command.

        The command and its ack live on different topics, which reach the broker in separate
        batches in no fixed order, so the ack can be folded first; then the rollout that selected
        the device is the one (the latest published, if several did): either order counts alike.
        """
        if dev.exposures:
            return dev.exposures[-1].rollout_id
        if not dev.memb:
            return None
        latest = max(dev.memb, key=lambda m: (m.rollout.published_ms, m.rollout.rollout_id))
        return latest.rollout.rollout_id

    def _command(self, ev: DeviceCommand) -> None:
        if ev.kind is not CommandKind.UPDATE:
            return
        dev = self._device(ev.device_id)
        exp = self._exposure(dev, ev.rollout_id, ev.stage)
        if exp.stage < 0 or exp.commanded_at is None:
            exp.stage = ev.stage
        info = self.rollouts.get(ev.rollout_id)
        version = info.target if info else ev.target_version
        key = self._key(ev.rollout_id, exp.stage, version, False, self._slice(dev))
        t = ev.issued_at_ms
        if t // self._w < self.closed:
            self._agg(t // self._w, key).late_events += 1
        if exp.commanded_at is None or t < exp.commanded_at:
            self._move(key, "commanded", exp.commanded_at, t)
            exp.commanded_at = t
        for field in ("applied_at", "acked_at", "terminal_at", "healthy_at"):
            # facts a device clock placed before the command move up to it
            v = getattr(exp, field)
            if v is not None and v < t:
                if field != "terminal_at":
                    self._move(key, field[:-3], v, t)
                setattr(exp, field, t)

    def _decode(self, ev: DecodeErrorCount) -> None:
        idx = ev.window_start_ms // self._w
        for rid in sorted(self.rollouts):
            info = self.rollouts[rid]
            if ev.firmware_version in (info.target, info.previous):
                base = ev.firmware_version != info.target
                agg = self._agg(idx, self._key(rid, VERSION_WIDE, ev.firmware_version, base))
                agg.decode_errors += ev.count
                if idx < self.closed:
                    agg.late_events += 1
