"""Prometheus metrics of the alert forwarder (`fleetgate alerts --metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

__all__ = ["AlertMetrics"]


class AlertMetrics:
    """One registry per forwarder, so tests can run several in one process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sent = Counter(
            "fleetgate_alerts_sent_total",
            "Alerts delivered, by target and status (firing, resolved)",
            ["target", "status"],
            registry=r,
        )
        self.retries = Counter(
            "fleetgate_alerts_delivery_retries_total",
            "Delivery attempts that failed and are retried (target down, 5xx, timeout)",
            ["target"],
            registry=r,
        )
        self.pending = Gauge(
            "fleetgate_alerts_pending_delivery",
            "Alerts waiting for a target to accept them (offsets held meanwhile)",
            ["target"],
            registry=r,
        )
        self.refused = Counter(
            "fleetgate_alerts_refused_total",
            "Alerts a target refused outright (400/422), written to the dead-letter topic",
            ["target"],
            registry=r,
        )
        self.open = Gauge("fleetgate_alerts_open", "Alerts firing, re-sent until resolved", registry=r)
        self.skipped = Counter(
            "fleetgate_alerts_skipped_records_total",
            "Control records that raise no alert: undecodable (dead-lettered) or failing the signature check",
            ["reason"],
            registry=r,
        )

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
