"""The forwarder's memory in Redis: open alerts (re-sent until resolved) and resolved ids.

Written after the alerts were delivered and before the offsets are committed, so after a
crash the book either already holds a change (its records are re-delivered: same alerts,
harmless) or does not (they are re-processed from the old book).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from streams.alerts.model import Alert, AlertBook

__all__ = ["AlertStore"]


class AlertStore:
    """``{ns}:alerts:{group}:open`` (decision id -> alert JSON), ``...:resolved`` (id -> ms)."""

    def __init__(self, client: redis.Redis, namespace: str, group: str) -> None:
        self.client = client
        self.k_open = f"{namespace}:alerts:{group}:open"
        self.k_resolved = f"{namespace}:alerts:{group}:resolved"

    @classmethod
    def from_url(cls, url: str, namespace: str, group: str) -> AlertStore:
        return cls(redis.Redis.from_url(url), namespace, group)

    def load(self) -> AlertBook:
        raw_open: dict[Any, Any] = self.client.hgetall(self.k_open)
        raw_done: dict[Any, Any] = self.client.hgetall(self.k_resolved)
        return AlertBook(
            {k.decode(): Alert.from_json(v) for k, v in raw_open.items()},
            {k.decode(): int(v) for k, v in raw_done.items()},
        )

    def save(self, changed: Sequence[Alert], forgotten: Sequence[str] = ()) -> None:
        """Record what was delivered: firing alerts stay open, resolved ones move to resolved."""
        if not changed and not forgotten:
            return
        pipe = self.client.pipeline(transaction=True)
        for a in changed:
            if a.resolved_by:
                pipe.hdel(self.k_open, a.decision_id)
                pipe.hset(self.k_resolved, a.decision_id, a.ends_at_ms)
            else:
                pipe.hset(self.k_open, a.decision_id, a.to_json())
        for k in forgotten:
            pipe.hdel(self.k_open, k)
            pipe.hdel(self.k_resolved, k)
        pipe.execute()
