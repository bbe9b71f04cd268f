"""Where alerts go: the Alertmanager v2 API, or a generic JSON webhook (stdlib HTTP only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from streams.alerts.errors import DeliveryRejected, DeliveryUnavailable
from streams.alerts.model import Alert

__all__ = ["AlertmanagerTarget", "Target", "WebhookTarget", "check_url", "public"]

# The payload itself is wrong: retrying the same bytes cannot succeed.  Every other failure
# (down, 5xx, timeouts, and 401/403/404 from a misconfigured proxy) is retried: fixing the
# receiver must not lose an alert.
_REJECTED = (400, 422)


class Target(Protocol):
    name: str
    resends: bool  # True: open alerts are re-sent periodically (Alertmanager forgets on restart)

    def send(self, alerts: Sequence[Alert]) -> None: ...


def check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{public(url)!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def public(url: str) -> str:
    """Scheme and host only: webhook paths and queries often carry a token, never log them."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}" if parts.scheme and host else "(unparsable URL)"


def _post(url: str, body: object, timeout_s: float) -> tuple[int, str]:
    """(status, body excerpt); status 0 when nothing answered."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310 - check_url
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - check_url
            return int(resp.status), resp.read(500).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(500).decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:  # refused, reset, timeout, DNS
        return 0, str(getattr(exc, "reason", exc))


class AlertmanagerTarget:
    """``POST {url}/api/v2/alerts`` to every listed Alertmanager.

    Delivered when at least one accepts (the members of an Alertmanager cluster gossip
    alerts to each other; Prometheus counts a delivery the same way)."""

    resends = True

    def __init__(self, urls: Sequence[str], timeout_s: float = 10.0) -> None:
        if not urls:
            raise ValueError("at least one Alertmanager URL is needed")
        self.urls = [check_url(u) for u in urls]
        self.timeout_s = timeout_s
        self.name = "alertmanager"

    def send(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        body = [a.to_alertmanager() for a in alerts]
        failures: list[tuple[str, int, str]] = []
        for url in self.urls:
            status, text = _post(f"{url}/api/v2/alerts", body, self.timeout_s)
            if 200 <= status < 300:
                return
            failures.append((url, status, text.strip()))
        detail = "; ".join(f"{public(u)}: {s or 'no answer'} {t[:200]}" for u, s, t in failures)
        if all(s in _REJECTED for _, s, _ in failures):
            raise DeliveryRejected(detail)
        raise DeliveryUnavailable(detail, list(alerts))


class WebhookTarget:
    """One ``POST`` per alert (body: :meth:`Alert.to_webhook`) to one URL; 2xx is delivered."""

    resends = False

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = check_url(url)
        self.timeout_s = timeout_s
        self.name = f"webhook {public(self.url)}"

    def send(self, alerts: Sequence[Alert]) -> None:
        for i, a in enumerate(alerts):
            status, text = _post(self.url, a.to_webhook(), self.timeout_s)
            if 200 <= status < 300:
                continue
            detail = f"{self.name}: {status or 'no answer'} {text.strip()[:200]}"
            if status in _REJECTED:
                raise DeliveryRejected(detail)
            raise DeliveryUnavailable(detail, list(alerts[i:]))
