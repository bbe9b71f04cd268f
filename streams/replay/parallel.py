"""Parallel replay: decode and fold the input partitions in worker processes, merge like one engine.

The sequential replay (:func:`streams.replay.replayer.replay`) decodes every partition, merges
them into one order (a stable sort on each record's progress key) and folds that order with one
:class:`gates.engine.Engine`.  Its two costly parts, decoding and the per-device fold, are
per-device work, and devices live in exactly one partition number.  This module splits them
over forked worker processes by partition number (the worker side: ``parallel_worker.py``) and
gives **exactly** the sequential result:

1. *Decode* (workers, in parallel).  Each worker decodes its partitions (all three input topics
   of a partition number) and sends back, in its local merge order, each record's progress key
   and global position (the record's place in the sequential ``events`` list), its device ids and
   its decode errors.  The records stay in the worker.
2. *Schedule* (main).  The single engine flushes windows at the first input event whose progress
   key reaches the next window boundary (the progress keys are running maxima, so that event is
   where the engine's own maximum crosses it), cuts batches at plans (and, collecting health, at
   window boundaries) and checks for late deltas at each batch end.  All of these are points of
   the global order that binary search over the workers' sorted keys finds without merging them.
3. *Fold* (workers, in parallel).  Each worker folds its own records into one
   ``PartitionEngine``'s aggregator in the global order restricted to its records: every plan and
   flush at its global position, decode-error counts in worker 0, and the attributes of a device
   right before its first record, as in the sequential fold.
4. *Decide* (main).  For each flush point the workers' partials of each (rollout, window) are
   added up into the one partial the single engine would have produced (aggregates are counts,
   sketches add exactly) and fed to one :class:`gates.decider.Decider` with the same watermarks,
   plans and acknowledgements.

Window aggregates are sums over devices, and each device's state depends only on its own events
and on the global flush points, so the sums equal the single engine's.  Where that argument does
not hold the replay falls back to the sequential path: a device seen in two partition numbers, or
more distinct metric names than the policy's cap (admission order would matter).
``tests/replay/test_parallel.py`` compares both paths decision by decision and health by health.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from gates.aggregates import CohortKey, WindowAggregate
from gates.engine import Engine
from gates.events import DecodeErrorCount, DeviceAttributes, RolloutPlan, RolloutState
from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from gates.wire import WindowPartial
from streams.codecs import DecodeError
from streams.replay.capture import INPUT_TOPICS, Capture
from streams.replay.ordering import NEG, apply_plan
from streams.replay.parallel_worker import ERROR, FLUSH, INF, LATE, MID, PLAN, PRE, Op, worker_main

__all__ = ["MIN_PARALLEL_RECORDS", "default_workers", "replay_parallel"]


_ERR = 2 << 60  # global position of decode errors: _ERR + rank
MIN_PARALLEL_RECORDS = 20_000  # below this, forking costs more than it saves


def default_workers() -> int:
    """Worker processes for a parallel replay: the usable cores, at most 8 (FLEETGATE_REPLAY_WORKERS)."""
    env = os.environ.get("FLEETGATE_REPLAY_WORKERS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return min(n, 8)


@dataclass
class Parallel:
    """What the replayer needs back from a parallel run."""

    decisions: list[Any]
    health: dict[tuple[str, int, str, bool, int], Any]
    device_ids: set[str]
    errors: list[DecodeError]
    events: int
    watermark_ms: int
    max_event_ms: int
    attributes: dict[str, DeviceAttributes]
    notes: list[str]
    seconds: dict[str, float]  # wall time per phase (worker phases: the slowest worker)


# ---------------------------------------------------------------- main side
class _Index:
    """The input records of every worker, each sorted by (progress key, global position)."""

    def __init__(self, parts: list[tuple[array[int], array[int]]]) -> None:
        self.parts = parts

    def first_at_or_above(self, key: int) -> tuple[int, int] | None:
        """(key, gpos) of the first record in the global order whose key is >= ``key``."""
        best: tuple[int, int] | None = None
        for keys, gpos in self.parts:
            j = bisect_left(keys, key)
            if j < len(keys):
                c = (keys[j], gpos[j])
                if best is None or c < best:
                    best = c
        return best

    def count_before(self, key: int, gpos: int) -> int:
        """Records before the position (key, gpos) in the global order."""
        n = 0
        for keys, gp in self.parts:
            lo = bisect_left(keys, key)
            hi = bisect_left(keys, key + 1, lo)
            n += bisect_left(gp, gpos, lo, hi)
        return n


def _combine(
    results: list[list[WindowPartial]], watermark_ms: int, seq: list[int], last: dict[str, int]
) -> list[WindowPartial]:
    """The partials one aggregator over all partitions would have emitted at this flush
    (`seq` and `last`, the sequence counter and each rollout's last sequence, carry over)."""
    groups: dict[tuple[str, int], list[WindowPartial]] = {}
    for partials in results:
        for p in partials:
            groups.setdefault((p.rollout_id, p.window_start_ms), []).append(p)
    out: list[WindowPartial] = []
    for (rid, start), ps in sorted(groups.items()):
        sums: dict[CohortKey, WindowAggregate] = {}
        for p in ps:
            for key, agg in p.aggregates.items():
                mine = sums.get(key)
                if mine is None:
                    mine = sums[key] = WindowAggregate()
                mine.merge(agg)
        aggs = {k: a for k, a in sorted(sums.items()) if not a.is_empty()}
        if not aggs:
            continue
        seq[0] += 1
        previous, last[rid] = last.get(rid, 0), seq[0]
        first = ps[0]
        out.append(
            WindowPartial(
                source_partition=0,
                sequence=seq[0],
                previous=previous,
                rollout_id=rid,
                window_start_ms=start,
                window_end_ms=first.window_end_ms,
                late=first.late,
                watermark_ms=watermark_ms,
                input_from=min(p.input_from for p in ps),
                input_to=sum(p.input_to for p in ps),
                aggregates=aggs,
            )
        )
    return out


def _assign(capture: Capture, workers: int) -> list[list[tuple[int, str, int]]] | None:
    """Partition numbers to workers (all three topics of a number together), balanced by size."""
    sizes: dict[int, int] = {}
    for (short, part), msgs in capture.inputs.items():
        if short not in INPUT_TOPICS or not 0 <= part < (1 << 24) or len(msgs) >= (1 << 32):
            return None
        sizes[part] = sizes.get(part, 0) + len(msgs)
    load = [0] * workers
    owner: dict[int, int] = {}
    for part in sorted(sizes, key=lambda p: (-sizes[p], p)):
        w = load.index(min(load))
        owner[part] = w
        load[w] += sizes[part]
    lists: list[list[tuple[int, str, int]]] = [[] for _ in range(workers)]
    for ti, short in enumerate(INPUT_TOPICS):  # the sequential iteration order
        for (topic, part), msgs in sorted(capture.inputs.items()):
            if topic == short and msgs:
                lists[owner[part]].append((ti, short, part))
    return [x for x in lists if x]


def replay_parallel(
    capture: Capture,
    policy: GatePolicy,
    plans: list[tuple[int, RolloutPlan, int]],
    *,
    lookup: Any,
    collect_health: bool,
    workers: int,
) -> Parallel | str:
    """Replay with ``workers`` processes; a reason string when it must fall back to sequential.

    ``plans``: ``(progress key, plan, timestamp)`` in the sequential order (already filtered);
    a key other than ``NEG`` is replaced by the plan's arrival key, which the workers find.
    """
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return "no fork start method"
    lists = _assign(capture, workers)
    if lists is None:
        return "partition numbers or sizes out of range"
    if len(lists) < 2:
        return "one partition number"
    placed_ts = [ts for k, _, ts in plans if k != NEG]
    procs = []
    conns = []
    gc.freeze()  # what exists now is shared with the workers: keep the collector off its pages
    for mine in lists:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(child, capture, mine, policy, placed_ts), daemon=True)
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)
    try:
        return _run(capture, policy, plans, lookup, collect_health, conns)
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                c.send(None)
            c.close()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():  # pragma: no cover
                p.kill()
                p.join()
        gc.unfreeze()


def _recv(conns: list[Any]) -> list[Any] | str:
    out = []
    for c in conns:
        try:
            status, payload = c.recv()
        except EOFError:
            return "a worker process died"
        if status != "ok":
            return f"a worker failed: {payload}"
        out.append(payload)
    return out


def _run(
    capture: Capture,
    policy: GatePolicy,
    plans: list[tuple[int, RolloutPlan, int]],
    lookup: Any,
    collect_health: bool,
    conns: list[Any],
) -> Parallel | str:
    t0 = time.perf_counter()
    got = _recv(conns)
    if isinstance(got, str):
        return got
    seconds = {"decode phase (wall)": time.perf_counter() - t0}
    for name in ("rows", "decode", "order"):
        seconds[f"  {name} (slowest worker)"] = max(g["seconds"][name] for g in got)
    t1 = time.perf_counter()
    if any(k != NEG for k, _, _ in plans):  # arrival keys: the smallest any worker found
        found = iter([min(ks) for ks in zip(*(g["plan_keys"] for g in got), strict=True)])
        plans = [(k if k == NEG else next(found), p, ts) for k, p, ts in plans]
    device_sets = [g["devices"] for g in got]
    device_ids: set[str] = set().union(*device_sets)
    if sum(len(s) for s in device_sets) != len(device_ids):
        return "a device appears in two partition numbers"
    parts = []
    for g in got:
        keys, gpos = array("q"), array("q")
        keys.frombytes(g["keys"])
        gpos.frombytes(g["gpos"])
        parts.append((keys, gpos))
    index = _Index(parts)
    n_records = sum(len(k) for k, _ in parts)
    # decode errors in the sequential order: by (topic, partition, position), then by timestamp
    tagged = sorted((e for g in got for e in g["errors"]), key=lambda x: (x[0], x[1], x[2]))
    errors = sorted((e for *_, e in tagged), key=lambda e: e.timestamp_ms)
    w = policy.window_ms
    err_events: list[tuple[int, int, DecodeErrorCount]] = []
    for rank, e in enumerate(errors):
        t = e.timestamp_ms if e.timestamp_ms >= 0 else 0
        ev = DecodeErrorCount(e.firmware_version or "unknown", t - t % w, e.reason.value, 1)
        err_events.append((e.timestamp_ms, _ERR + rank, ev))

    ops = _schedule(index, plans, err_events, policy, collect_health, n_records)

    # inventory, as the sequential replay does it
    notes: list[str] = []
    if capture.inventory is not None:
        attrs = {d: capture.inventory[d] for d in device_ids if d in capture.inventory}
    elif lookup is not None:
        attrs, note = lookup(device_ids)
        if note:
            notes.append(note)
    else:
        attrs = {}
    plan_list = [p for _, p, _ in plans]
    seed = _first_flush_windows(ops, plan_list, policy)
    for wi, c in enumerate(conns):
        mine = [op for op in ops if op.kind != ERROR or wi == 0]
        c.send((mine, plan_list, {d: a for d in device_sets[wi] if (a := attrs.get(d)) is not None}, seed))
    # map each worker's op indexes back to the global op list
    idx_maps = []
    for wi in range(len(conns)):
        idx_maps.append([i for i, op in enumerate(ops) if op.kind != ERROR or wi == 0])
    t2 = time.perf_counter()
    seconds["schedule (main)"] = t2 - t1
    folded = _recv(conns)
    if isinstance(folded, str):
        return folded
    seconds["fold phase (wall)"] = time.perf_counter() - t2
    seconds["  fold (slowest worker)"] = max(f["seconds"]["fold"] for f in folded)
    t3 = time.perf_counter()
    names: set[str] = set().union(*(f["metric_names"] for f in folded))
    if len(names) > policy.max_metric_names:
        return "more metric names than the policy admits"
    results: dict[int, list[tuple[bool, list[WindowPartial]]]] = {}
    for wi, f in enumerate(folded):
        for local_i, pending, partials in f["out"]:
            results.setdefault(idx_maps[wi][local_i], []).append((pending, partials))
    par = _decide(capture, policy, ops, plans, results, collect_health, device_ids, errors, attrs, notes,
                  n_records, index)  # fmt: skip
    seconds["decide (main)"] = time.perf_counter() - t3
    par.seconds = seconds
    return par


def _first_flush_windows(ops: list[Op], plans: list[RolloutPlan], policy: GatePolicy) -> list[int]:
    """Windows open in the single aggregator at its first flush: only plans and decode-error
    counts can come before the first record, so fold those on a scratch aggregator."""
    scratch = PartitionEngine(policy, 0).partial
    for op in ops:
        if op.kind == FLUSH:
            break
        if op.kind == PLAN:
            scratch.observe_plan(plans[op.arg])
        elif op.kind == ERROR:
            scratch.fold(op.arg)
    return sorted(scratch._open)


def _schedule(
    index: _Index,
    plans: list[tuple[int, RolloutPlan, int]],
    err_events: list[tuple[int, int, DecodeErrorCount]],
    policy: GatePolicy,
    collect_health: bool,
    n_records: int,
) -> list[Op]:
    """Every engine flush, plan, batch end and decode-error event of the sequential fold, in order."""
    w, lateness = policy.window_ms, policy.allowed_lateness_ms
    ops: list[Op] = []
    # engine flushes: the first input record whose progress key reaches the next boundary
    closed = -(2**62)
    while True:
        boundary = (closed + 1) * w + lateness
        at = index.first_at_or_above(boundary)
        if at is None:
            break
        wm = at[0] - lateness
        ops.append(Op(at[0], at[1], MID, FLUSH, wm))
        closed = max(closed, wm // w)
    # batch cuts: every plan; with health, the first non-plan event at or past each health boundary
    cuts: list[tuple[int, int, int]] = [(k, j, j) for j, (k, _, _) in enumerate(plans)]  # (key, gpos, plan)
    if collect_health:
        err_keys = [k for k, _, _ in err_events]
        hb = NEG
        while True:
            cand = index.first_at_or_above(hb)
            e = bisect_left(err_keys, hb)
            if e < len(err_events) and (cand is None or (err_events[e][0], err_events[e][1]) < cand):
                cand = (err_events[e][0], err_events[e][1])
            if cand is None:
                break
            cuts.append((cand[0], cand[1], -1))
            hb = ((cand[0] - lateness) // w + 1) * w + lateness
    cuts.sort()
    err_pos = [(k, g) for k, g, _ in err_events]

    def nonplan_before(key: int, gpos: int) -> int:
        return index.count_before(key, gpos) + bisect_left(err_pos, (key, gpos))

    prev = 0
    for key, gpos, plan in cuts:
        here = nonplan_before(key, gpos)
        if here > prev:  # the batch since the last cut is not empty: a step ends here
            ops.append(Op(key, gpos, PRE, LATE, collect_health))
        prev = here
        if plan >= 0:
            ops.append(Op(key, gpos, PRE, PLAN, plan))
    if n_records + len(err_events) > prev:
        ops.append(Op(*INF, PRE, LATE, collect_health))
    for k, g, ev in err_events:
        ops.append(Op(k, g, PRE, ERROR, ev))
    # at one position: batch end, then plan / error event (pre), then the engine flush (mid)
    order = {LATE: 0, PLAN: 1, ERROR: 1, FLUSH: 2}
    ops.sort(key=lambda op: (op.key, op.gpos, op.phase, order[op.kind]))
    return ops


def _decide(
    capture: Capture,
    policy: GatePolicy,
    ops: list[Op],
    plans: list[tuple[int, RolloutPlan, int]],
    results: dict[int, list[tuple[bool, list[WindowPartial]]]],
    collect_health: bool,
    device_ids: set[str],
    errors: list[DecodeError],
    attrs: dict[str, DeviceAttributes],
    notes: list[str],
    n_records: int,
    index: _Index,
) -> Parallel:

    engine = Engine(policy)  # its decider decides; its partition engine only sees the plans
    decider = engine.decider
    out: list[Any] = []
    health: dict[tuple[str, int, str, bool, int], Any] = {}
    plan_state: dict[str, RolloutState] = {}
    seq: list[int] = [0]
    last: dict[str, int] = {}  # each rollout's last sequence
    watermark = NEG
    for i, op in enumerate(ops):
        kind = op.kind
        if kind == FLUSH:
            watermark = max(watermark, op.arg)
            partials = _combine([p for _, p in results.get(i, [])], watermark, seq, last)
            decider.merge(partials)
            out.extend(decider.advance(watermark))
        elif kind == LATE:
            got = results.get(i, [])
            if any(pending for pending, _ in got):
                decider.merge(_combine([p for _, p in got], watermark, seq, last))
                out.extend(decider.advance(watermark))
            if op.arg:
                for h in engine.cohort_health():
                    health[(h.rollout_id, h.stage, h.firmware_version, h.is_baseline, h.window_start_ms)] = h
        elif kind == PLAN:
            apply_plan(engine, plans[op.arg][1], plan_state, out)
    max_event = max((keys[-1] for keys, _ in index.parts if len(keys)), default=NEG)
    return Parallel(
        decisions=out,
        health=health,
        device_ids=device_ids,
        errors=errors,
        events=len(plans) + n_records + len(errors),
        watermark_ms=watermark,
        max_event_ms=max_event,
        attributes=attrs,
        notes=notes,
        seconds={},
    )
