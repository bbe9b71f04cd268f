"""Errors of the alert forwarder: one root, a transient and a permanent delivery failure."""

from __future__ import annotations

from typing import Any

__all__ = ["AlertsError", "DeliveryRejected", "DeliveryUnavailable"]


class AlertsError(Exception):
    """Root of the exceptions of ``streams.alerts``."""


class DeliveryUnavailable(AlertsError):
    """The receiver is down, timed out or answered 5xx (or 401/403/404/408/429): retry later.

    ``remaining``: the alerts not yet accepted (a webhook may have taken the first few)."""

    def __init__(self, detail: str, remaining: list[Any]) -> None:
        super().__init__(detail)
        self.remaining = remaining


class DeliveryRejected(AlertsError):
    """The receiver refused the payload itself (400 or 422): sending it again cannot help."""
