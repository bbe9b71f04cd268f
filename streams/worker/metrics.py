"""Prometheus metrics of the worker (served on FLEETGATE_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["WorkerMetrics"]


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
        self.batch_seconds = Histogram(
            "fleetgate_engine_batch_seconds",
            "Time to decode and fold one consumed batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
