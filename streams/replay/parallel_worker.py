"""The worker side of the parallel replay (``streams/replay/parallel.py``).

A forked worker process decodes its share of the input partitions (all three input topics
of a partition number), sends back each record's progress key and global position, then
folds its records into one ``PartitionEngine``'s aggregator at the positions the main
process scheduled (``Op``) and sends back the partials.  The op list and its constants are
shared by both sides.
"""

from __future__ import annotations

import contextlib
import gc
import time
import traceback
from array import array
from dataclasses import dataclass
from typing import Any

from gates.events import DeviceAttributes, RolloutPlan
from gates.partition import PartitionEngine
from gates.policy import GatePolicy
from gates.wire import WindowPartial
from streams.codecs import DecodeError, Decoder
from streams.replay.capture import Capture
from streams.replay.kafka import fill_lazy
from streams.replay.ordering import LAST, arrival_keys, progress_keys, record_times

__all__ = ["ERROR", "FLUSH", "INF", "LATE", "MID", "PLAN", "PRE", "REC", "Op", "worker_main"]

REC = 1 << 60  # global position of input records: REC + (topic << 56) + (partition << 32) + index
INF = (1 << 62, 0)

# op kinds (main and workers walk the same list)
LATE, PLAN, ERROR, FLUSH = 0, 1, 2, 3
# phase at a position: batch ends, plans and error events come before the record's attributes,
# an engine flush after them (the single engine flushes while handling the record)
PRE, MID = 0, 1


@dataclass
class Op:
    key: int
    gpos: int
    phase: int
    kind: int
    arg: Any = None  # FLUSH: watermark; PLAN: plan index; ERROR: DecodeErrorCount; LATE: collect health


def _progress(records: list[Any], skew: int) -> list[int]:
    keys: list[int] = []
    progress_keys(records, skew, keys)
    return keys


class _Worker:
    def __init__(
        self, capture: Capture, lists: list[tuple[int, str, int]], policy: GatePolicy, placed_ts: list[int]
    ) -> None:
        self.capture = capture
        self.lists = lists  # (topic index, short topic, partition), in the sequential iteration order
        self.policy = policy
        self.placed_ts = placed_ts  # timestamps of the plans placed by arrival (ordering.arrival_keys)
        self.records: list[Any] = []
        self.order: list[int] = []
        self.keys: list[int] = []
        self.gpos: list[int] = []

    def decode(self) -> dict[str, Any]:

        decoders = {
            "telemetry": Decoder.telemetry(),
            "acks": Decoder.ack(),
            "device-commands": Decoder.output(),
        }
        skew = self.policy.clock_skew_ms
        records: list[Any] = []
        keys: list[int] = []
        gpos: list[int] = []
        errors: list[tuple[int, int, int, DecodeError]] = []
        plan_keys = [LAST] * len(self.placed_ts)
        t0 = time.perf_counter()
        msgs = [self.capture.inputs[(short, part)] for _, short, part in self.lists]
        fill_lazy(msgs)  # export.ChunkRows / kafka.KafkaRows: built or consumed here, in the worker
        t1 = time.perf_counter()
        for (ti, short, part), batch in zip(self.lists, msgs, strict=True):
            recs, errs = decoders[short].decode_batch(batch)
            base = REC + (ti << 56) + (part << 32)
            records.extend(recs)
            mine = _progress(recs, skew)
            if self.placed_ts:
                got = arrival_keys(self.placed_ts, record_times(batch, errs), mine)
                plan_keys = [min(a, b) for a, b in zip(plan_keys, got, strict=True)]
            keys.extend(mine)
            gpos.extend(range(base, base + len(recs)))
            errors.extend((ti, part, k, e) for k, e in enumerate(errs))
        t2 = time.perf_counter()
        order = sorted(range(len(records)), key=keys.__getitem__)  # stable: ties keep global order
        self.records = records
        self.order = order
        self.keys = [keys[i] for i in order]
        self.gpos = [gpos[i] for i in order]
        devices = {d for r in records if (d := getattr(r, "device_id", None)) is not None}
        return {
            "keys": array("q", self.keys).tobytes(),
            "gpos": array("q", self.gpos).tobytes(),
            "devices": devices,
            "errors": errors,
            "plan_keys": plan_keys,
            "seconds": {"rows": t1 - t0, "decode": t2 - t1, "order": time.perf_counter() - t2},
        }

    def fold(
        self, ops: list[Op], plans: list[RolloutPlan], attrs: dict[str, DeviceAttributes], seed: list[int]
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        engine = PartitionEngine(self.policy, 0)
        partial = engine.partial
        # the windows the single aggregator has open at its first flush (decode-error counts
        # before the first record): its first flush snapshots from the earliest of them
        for idx in seed:
            partial._open.setdefault(idx, {})
        out: list[tuple[int, bool, list[WindowPartial]]] = []
        seen: set[str] = set()
        nops = len(ops)
        oi = 0

        def apply(op: Op, i: int) -> None:
            kind = op.kind
            if kind == FLUSH:
                out.append((i, True, engine.advance(op.arg)))
            elif kind == LATE:
                pending = partial.has_pending_late()
                if pending:
                    out.append((i, True, engine.advance(engine.watermark_ms)))
            elif kind == PLAN:
                partial.fold(plans[op.arg])
            else:  # ERROR: a DecodeErrorCount
                partial.fold(op.arg)

        nk, ng, nph = (ops[0].key, ops[0].gpos, ops[0].phase) if ops else (*INF, 0)
        records = self.records
        for i, k, g in zip(self.order, self.keys, self.gpos, strict=True):
            # everything scheduled before this record (and batch ends / plans at it)
            if nk <= k:
                while oi < nops and (nk < k or (nk == k and (ng < g or (ng == g and nph == PRE)))):
                    apply(ops[oi], oi)
                    oi += 1
                    nk, ng, nph = (ops[oi].key, ops[oi].gpos, ops[oi].phase) if oi < nops else (*INF, 0)
            ev = records[i]
            d = getattr(ev, "device_id", None)
            if d is not None and d not in seen:
                seen.add(d)
                partial.fold(attrs.get(d) or DeviceAttributes(d))
            if nk == k and ng == g:  # an engine flush while handling this record
                while oi < nops and nk == k and ng == g:
                    apply(ops[oi], oi)
                    oi += 1
                    nk, ng, nph = (ops[oi].key, ops[oi].gpos, ops[oi].phase) if oi < nops else (*INF, 0)
            partial.fold(ev)
        while oi < nops:
            apply(ops[oi], oi)
            oi += 1
        return {
            "out": out,
            "metric_names": set(partial._metric_names),
            "seconds": {"fold": time.perf_counter() - t0},
        }


def worker_main(
    conn: Any, capture: Capture, lists: list[tuple[int, str, int]], policy: GatePolicy, placed_ts: list[int]
) -> None:
    # A short-lived process that only allocates acyclic records: the cyclic collector would
    # rescan the inherited capture and every record again and again for nothing.
    gc.disable()
    try:
        w = _Worker(capture, lists, policy, placed_ts)
        conn.send(("ok", w.decode()))
        msg = conn.recv()
        if msg is None:
            return
        ops, plans, attrs, seed = msg
        conn.send(("ok", w.fold(ops, plans, attrs, seed)))
    except BaseException:  # report, the main process falls back to the sequential replay
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()[-2000:]))
    finally:
        conn.close()
