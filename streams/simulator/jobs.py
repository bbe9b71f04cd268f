"""Command jobs of the simulated devices: a command's life from delivery to its last ack.

A command reaches a device at once if it is online, else when it wakes or reconnects
(:func:`submit`, then :func:`deliver` from the report wheel).  Each step after that (an ack,
an apply, a link lost mid-update) is one entry on the simulator's heap of timed steps, run
in time order by :func:`steps`.  Scenario effects decide failures and refusals.  The report
side (telemetry, wake-ups) stays in ``streams/simulator/engine.py``; it emits the acks
(:meth:`Simulator._ack`) and records effects (:meth:`Simulator._effect`) for both.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from gates.events import AckStatus, CommandKind, DeviceCommand, TargetKind
from streams.simulator.fleet import device_index
from streams.simulator.scenarios import EffectKind

if TYPE_CHECKING:
    from streams.simulator.engine import Simulator

__all__ = ["deliver", "steps", "submit"]

# heap actions
_DELIVER, _ACK, _APPLY, _DROP = 0, 1, 2, 3


def submit(sim: Simulator, cmd: DeviceCommand, now_ms: int | None = None) -> bool:
    """Hand a command to its device: delivered at once if online, else when it wakes/reconnects."""
    now = sim.now_ms if now_ms is None else now_ms
    i = device_index(cmd.device_id, sim.fleet.size)
    if i < 0:
        sim.stats.ignored_commands += 1
        return False
    sim.stats.commands += 1
    p = sim.profiles[sim.fleet.profile[i]]
    if p.sleeps or sim.offline_until.get(i, -1) > now:
        sim.pending.setdefault(i, []).append(cmd)
        sim.attention[i] = 1
    else:
        _push(sim, now + p.command_delay_ms, _DELIVER, i, cmd)
    return True


def _push(sim: Simulator, t: int, action: int, i: int, data: Any) -> None:
    sim.seq += 1
    heapq.heappush(sim.heap, (t, sim.seq, action, i, data))


def steps(sim: Simulator, before_ms: int) -> None:
    """Run every heap step due strictly before ``before_ms``."""
    heap = sim.heap
    while heap and heap[0][0] < before_ms:
        t, _, action, i, data = heapq.heappop(heap)
        if action == _DELIVER:
            if sim.offline_until.get(i, -1) > t:
                sim.pending.setdefault(i, []).append(data)
                sim.attention[i] = 1
            else:
                deliver(sim, i, data, t)
        elif action == _ACK:
            status, cmd, error, attempt = data
            sim._ack(i, t, status, cmd, error, attempt)
        elif action == _APPLY:
            _apply(sim, i, t, *data)
        else:  # _DROP: link lost mid-update
            outage, late_ack = data
            sim.offline_until[i] = t + outage
            sim.attention[i] = 1
            if late_ack is not None:
                sim.late.setdefault(i, []).append((t, *late_ack))
            cmd = late_ack[1] if late_ack else None
            if cmd is not None:
                _done(sim, i, cmd)


def _version(sim: Simulator, kind: TargetKind, version: str, new: bool) -> int:
    names, flags = (
        (sim.fw_versions, sim.fw_new) if kind is TargetKind.FIRMWARE else (sim.cfg_versions, sim.cfg_new)
    )
    if version in names:
        idx = names.index(version)
        flags[idx] = flags[idx] or new
        return idx
    if len(names) >= 255:
        raise ValueError("more than 255 distinct versions in one simulation")
    names.append(version)
    flags.append(new)
    return len(names) - 1


def _done(sim: Simulator, i: int, cmd: DeviceCommand) -> None:
    last = sim.last_cmd.get(i)
    if last is not None and last[0] == cmd.command_id:
        sim.last_cmd[i] = (last[0], last[1], False)


def deliver(sim: Simulator, i: int, cmd: DeviceCommand, t: int) -> None:
    """The device receives ``cmd`` at ``t``: acks it and schedules the steps of its job."""
    last = sim.last_cmd.get(i)
    if last is not None and last[0] == cmd.command_id:
        if last[2]:  # the same command is still being worked on
            sim.stats.ignored_commands += 1
            return
        attempt = last[1] + 1
    else:
        attempt = 1
    sim.last_cmd[i] = (cmd.command_id, attempt, True)
    fw = cmd.target_kind is TargetKind.FIRMWARE
    cur_idx = sim.fw[i] if fw else sim.cfg[i]
    flags = sim.fw_new if fw else sim.cfg_new
    ps = sim.pset
    dl = ps.download_ms if fw else 0
    apply_ms = ps.apply_ms if fw else ps.config_apply_ms
    job = (cmd, attempt)
    if cmd.kind is CommandKind.UPDATE:
        target = _version(sim, cmd.target_kind, cmd.target_version, True)
        if target == cur_idx:
            sim._ack(i, t, AckStatus.APPLIED, cmd, None, attempt)
            _done(sim, i, cmd)
            return
        sim._ack(i, t, AckStatus.RECEIVED, cmd, None, attempt)
        if dl:
            _push(sim, t + dl, _ACK, i, (AckStatus.DOWNLOADING, cmd, None, attempt))
        end = t + dl + apply_ms
        p = sim.profiles[sim.fleet.profile[i]]
        if sim._effect(EffectKind.APPLY_FAILS, i, t):
            code = sim.scenario.effect(EffectKind.APPLY_FAILS).error_code  # type: ignore[union-attr]
            _push(sim, end, _ACK, i, (AckStatus.FAILED, cmd, code, attempt))
            _push(sim, end, _APPLY, i, (None, job, False))
        elif sim._effect(EffectKind.DROP_MID_UPDATE, i, t):
            eff = sim.scenario.effect(EffectKind.DROP_MID_UPDATE)
            assert eff is not None
            _push(
                sim,
                t + dl + apply_ms // 2,
                _DROP,
                i,
                (eff.duration_ms or ps.storm_outage_ms, (AckStatus.FAILED, cmd, eff.error_code, attempt)),
            )
        elif p.drop_probability and sim.rng.random() < p.drop_probability:
            late = (AckStatus.FAILED, cmd, "E_CONN_LOST", attempt) if sim.rng.random() < 0.5 else None
            _push(sim, t + dl + apply_ms // 2, _DROP, i, (p.outage_ms, late))
            if late is None:
                _done(sim, i, cmd)
        else:
            _push(sim, end, _APPLY, i, (target, job, True))
        return
    # ROLLBACK
    if flags[cur_idx] and sim._effect(EffectKind.REFUSE_ROLLBACK, i, t):
        code = sim.scenario.effect(EffectKind.REFUSE_ROLLBACK).error_code  # type: ignore[union-attr]
        sim._ack(i, t, AckStatus.RECEIVED, cmd, None, attempt)
        _push(sim, t + 100, _ACK, i, (AckStatus.REJECTED, cmd, code, attempt))
        _push(sim, t + 100, _APPLY, i, (None, job, False))
        return
    if cmd.target_version:
        target = _version(sim, cmd.target_kind, cmd.target_version, False)
    else:
        target = sim.lkg_fw[i] if fw else sim.lkg_cfg[i]
    if target == cur_idx:
        sim._ack(i, t, AckStatus.ROLLED_BACK, cmd, None, attempt)
        _done(sim, i, cmd)
        return
    sim._ack(i, t, AckStatus.RECEIVED, cmd, None, attempt)
    if dl:
        _push(sim, t + dl, _ACK, i, (AckStatus.DOWNLOADING, cmd, None, attempt))
    _push(sim, t + dl + apply_ms, _APPLY, i, (target, job, True))


def _apply(
    sim: Simulator, i: int, t: int, target: int | None, job: tuple[DeviceCommand, int], ok: bool
) -> None:
    cmd, attempt = job
    last = sim.last_cmd.get(i)
    if last is None or last[0] != cmd.command_id:
        return  # superseded by a later command (e.g. a ROLLBACK during the update): nothing installed
    if ok and target is not None:
        if cmd.target_kind is TargetKind.FIRMWARE:
            sim.lkg_fw[i] = sim.fw[i] if cmd.kind is CommandKind.UPDATE else target
            sim.fw[i] = target
            sim.boot_ms[i] = t
            sim.rebooted[i] = 1
        else:
            sim.lkg_cfg[i] = sim.cfg[i] if cmd.kind is CommandKind.UPDATE else target
            sim.cfg[i] = target
        status = AckStatus.APPLIED if cmd.kind is CommandKind.UPDATE else AckStatus.ROLLED_BACK
        sim._ack(i, t, status, cmd, None, attempt)
    _done(sim, i, cmd)
