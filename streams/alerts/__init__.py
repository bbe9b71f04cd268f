"""Alerts where people look: decisions from the control topic to Alertmanager and webhooks.

    forwarder = AlertForwarder(settings, AlertOptions(alertmanager_urls=("http://am:9093",)))
    forwarder.run()          # until forwarder.stop is set

See docs/operations.md ("Alerts") for labels, resolution and delivery guarantees.
"""

from __future__ import annotations

from streams.alerts.errors import AlertsError, DeliveryRejected, DeliveryUnavailable
from streams.alerts.forwarder import REJECTED_REASON, AlertForwarder, AlertOptions
from streams.alerts.metrics import AlertMetrics
from streams.alerts.model import ALERTNAMES, Alert, AlertBook, alert_for
from streams.alerts.store import AlertStore
from streams.alerts.targets import AlertmanagerTarget, WebhookTarget

__all__ = [
    "ALERTNAMES",
    "REJECTED_REASON",
    "Alert",
    "AlertBook",
    "AlertForwarder",
    "AlertMetrics",
    "AlertOptions",
    "AlertStore",
    "AlertmanagerTarget",
    "AlertsError",
    "DeliveryRejected",
    "DeliveryUnavailable",
    "WebhookTarget",
    "alert_for",
]
