"""Prometheus metrics of the worker (served on FLEETGATE_METRICS_PORT when set)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["STAGES", "StageClock", "WorkerMetrics"]

# Where the ingest thread's time goes; "other" is whatever lies between the timed stages.
STAGES = ("consume", "decode", "merge", "enrich", "fold", "transactions", "restore", "other")


class StageClock(Collector):
    """Wall and CPU time of the ingest thread per stage, charged by laps.

    `lap(stage)` charges everything since the previous lap to `stage`: one call at the end of
    each stage.  It runs a few times per partition per consumed batch, so it keeps plain floats
    (about 1 µs a lap, no locks); Prometheus reads them when scraped.  CPU time is the calling
    thread's (`time.thread_time`): the first lap of a thread only starts the clock.
    """

    def __init__(self) -> None:
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.laps = 0
        self._wall0 = 0.0
        self._cpu0: float | None = None

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), time.thread_time()
        if self._cpu0 is not None:
            self.wall[stage] += w - self._wall0
            self.cpu[stage] += c - self._cpu0
        self._wall0, self._cpu0 = w, c
        self.laps += 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        wall = CounterMetricFamily(
            "fleetgate_ingest_stage_seconds", "Wall time of the ingest thread per stage", labels=["stage"]
        )
        cpu = CounterMetricFamily(
            "fleetgate_ingest_stage_cpu_seconds", "CPU time of the ingest thread per stage", labels=["stage"]
        )
        for stage in STAGES:
            wall.add_metric([stage], self.wall[stage])
            cpu.add_metric([stage], self.cpu[stage])
        laps = CounterMetricFamily(
            "fleetgate_ingest_stage_laps", "Stage timer laps taken (their cost: bench)"
        )
        laps.add_metric([], self.laps)
        yield from (wall, cpu, laps)


class WorkerMetrics:
    """One registry per worker, so tests can run several workers in one process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter(
            "fleetgate_events_total", "Decoded input events", ["topic", "format"], registry=r
        )
        self.decode_errors = Counter(
            "fleetgate_decode_errors_total",
            "Undecodable input by reason and the firmware that sent it",
            ["topic", "reason", "firmware"],
            registry=r,
        )
        self.dead_letters = Counter(
            "fleetgate_dead_letters_total", "Records written to dead letters", registry=r
        )
        self.inventory_misses = Counter(
            "fleetgate_inventory_misses_total", "Devices looked up while Redis was unavailable", registry=r
        )
        self.consumer_lag = Gauge(
            "fleetgate_consumer_lag",
            "Messages behind the end of each input partition",
            ["topic", "partition"],
            registry=r,
        )
        self.watermark_lag = Gauge(
            "fleetgate_watermark_lag_ms", "Wall clock minus the rollout's watermark", ["rollout"], registry=r
        )
        self.decisions = Counter("fleetgate_decisions_total", "Decisions published", ["action"], registry=r)
        self.partials = Counter("fleetgate_partials_total", "Partial aggregates sent", registry=r)
        self.late_events = Counter(
            "fleetgate_late_events_total",
            "Events for a window that had already closed: merged as late data, never dropped",
            ["rollout"],
            registry=r,
        )
        self.clock_skew = Counter(
            "fleetgate_clock_skew_events_total",
            "Events whose device time was further than the policy's clock_skew from the broker time "
            "(counted at the broker time)",
            ["kind"],
            registry=r,
        )
        self.buffered = Gauge(
            "fleetgate_ingest_buffered_records",
            "Records decoded and waiting in the timestamp merge (bounded by pausing)",
            registry=r,
        )
        self.paused = Gauge(
            "fleetgate_ingest_paused_partitions", "Input topic partitions paused for backpressure", registry=r
        )
        self.duplicates = Counter(
            "fleetgate_partials_duplicate_total", "Re-sent partials recognised and skipped", registry=r
        )
        self.partials_reread = Counter(
            "fleetgate_partials_reread_total",
            "Times the decider read the partials topic again for envelopes its consumer skipped",
            registry=r,
        )
        self.partials_missing = Counter(
            "fleetgate_partials_missing_total",
            "Envelopes folded although partials before them are not in the topic (see the error log)",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "fleetgate_engine_batch_seconds",
            "Time to decode and fold one consumed batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.stages = StageClock()
        r.register(self.stages)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
