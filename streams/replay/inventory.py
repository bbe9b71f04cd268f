"""Inventory for a replay: the devices' attributes from Redis (as the live ingest) or a file snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields

import redis

from gates.events import DeviceAttributes
from streams.config import Settings
from streams.inventory import device_key

__all__ = ["attributes_from_dict", "attributes_to_dict", "lookup_redis"]

_FIELDS = frozenset(f.name for f in fields(DeviceAttributes))


def lookup_redis(settings: Settings, device_ids: Iterable[str]) -> tuple[dict[str, DeviceAttributes], str]:
    """(attributes of the devices Redis knows, a note for the operator: '' when all went well)."""
    ids = sorted(set(device_ids))
    found: dict[str, DeviceAttributes] = {}
    if not ids:
        return found, ""
    client = redis.Redis.from_url(settings.redis_url.value, socket_timeout=5, socket_connect_timeout=2)
    try:
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000]
            pipe = client.pipeline(transaction=False)
            for d in chunk:
                pipe.hgetall(device_key(settings.redis_namespace, d))
            for d, raw in zip(chunk, pipe.execute(), strict=True):
                if raw:
                    found[d] = attributes_from_dict(
                        {k.decode(): v.decode() for k, v in raw.items()} | {"device_id": d}
                    )
    except redis.RedisError as exc:
        return found, (
            f"inventory: Redis unreachable ({type(exc).__name__}: {exc}); "
            f"continuing with unknown attributes for {len(ids) - len(found)} devices"
        )
    finally:
        client.close()
    missing = len(ids) - len(found)
    return found, (
        f"inventory: {missing} of {len(ids)} devices not in Redis (unknown attributes)" if missing else ""
    )


def attributes_to_dict(a: DeviceAttributes) -> dict[str, str]:
    return asdict(a)


def attributes_from_dict(d: dict[str, str]) -> DeviceAttributes:
    return DeviceAttributes(**{k: v for k, v in d.items() if k in _FIELDS})
