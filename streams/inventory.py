"""Fleet inventory: load it from CSV into Redis, and look devices up with a bounded local cache.

Redis layout: one hash per device at `{namespace}:device:{device_id}` with the attributes of
`gates.events.DeviceAttributes`, and the set `{namespace}:devices` of every device id.
"""

from __future__ import annotations

import csv
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import redis

from gates.events import DeviceAttributes

__all__ = [
    "CSV_COLUMNS",
    "InventoryCache",
    "LoadReport",
    "device_key",
    "load_inventory_csv",
    "parse_inventory_csv",
    "read_all_devices",
]

CSV_COLUMNS = tuple(f.name for f in fields(DeviceAttributes))
_MAX_FIELD = 128


def device_key(namespace: str, device_id: str) -> str:
    return f"{namespace}:device:{device_id}"


@dataclass
class LoadReport:
    loaded: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def summary(self) -> str:
        return f"loaded {self.loaded} devices, skipped {len(self.skipped)} bad rows"


def parse_inventory_csv(path: Path, report: LoadReport) -> Iterator[DeviceAttributes]:
    """Yield one DeviceAttributes per good row; bad rows go to `report.skipped` with their line."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("device_id",) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: header must name the columns {', '.join(CSV_COLUMNS)}; missing {missing}"
            )
        unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
        if unknown:
            raise ValueError(f"{path}: unknown column(s) {unknown}; expected {', '.join(CSV_COLUMNS)}")
        seen: set[str] = set()
        for row in reader:
            line = reader.line_num
            if None in row:  # more cells than header columns
                report.skipped.append((line, "too many cells"))
                continue
            values = {k: (v or "").strip() for k, v in row.items()}
            if not values.get("device_id"):
                report.skipped.append((line, "empty device_id"))
                continue
            too_long = [k for k, v in values.items() if len(v) > _MAX_FIELD]
            if too_long:
                report.skipped.append((line, f"value longer than {_MAX_FIELD} characters in {too_long[0]}"))
                continue
            if values["device_id"] in seen:
                report.skipped.append((line, f"duplicate device_id {values['device_id']!r}"))
                continue
            seen.add(values["device_id"])
            yield DeviceAttributes(**{k: v for k, v in values.items() if v})


def load_inventory_csv(client: redis.Redis, namespace: str, path: Path, chunk: int = 2_000) -> LoadReport:
    """Load every good row; each chunk is written atomically (MULTI/EXEC)."""
    report = LoadReport()
    batch: list[DeviceAttributes] = []
    for attrs in parse_inventory_csv(path, report):
        batch.append(attrs)
        if len(batch) >= chunk:
            report.loaded += _write(client, namespace, batch)
            batch.clear()
    if batch:
        report.loaded += _write(client, namespace, batch)
    return report


def _write(client: redis.Redis, namespace: str, batch: list[DeviceAttributes]) -> int:
    pipe = client.pipeline(transaction=True)
    for attrs in batch:
        mapping = {f.name: getattr(attrs, f.name) for f in fields(DeviceAttributes)}
        pipe.hset(device_key(namespace, attrs.device_id), mapping=mapping)
    pipe.sadd(f"{namespace}:devices", *(a.device_id for a in batch))
    pipe.execute()
    return len(batch)


def _from_hash(device_id: str, raw: dict[bytes, bytes]) -> DeviceAttributes:
    known = {f.name for f in fields(DeviceAttributes)}
    values = {k.decode(): v.decode() for k, v in raw.items() if k.decode() in known}
    values["device_id"] = device_id
    return DeviceAttributes(**values)


def read_all_devices(client: redis.Redis, namespace: str) -> list[DeviceAttributes]:
    ids = sorted(m.decode() for m in client.smembers(f"{namespace}:devices"))
    out: list[DeviceAttributes] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for device_id in chunk:
            pipe.hgetall(device_key(namespace, device_id))
        out.extend(_from_hash(d, raw) for d, raw in zip(chunk, pipe.execute(), strict=True) if raw)
    return out


class InventoryCache:
    """Bounded, TTL'd local cache over the Redis inventory.

    `lookup_many` asks Redis once per batch for the ids it lacks.  When Redis is down it keeps
    serving what it has (even past the TTL), counts the misses and reports Redis as unavailable;
    it retries Redis at most every `retry_s` seconds, so an outage costs no per-event timeouts.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        max_size: int = 200_000,
        ttl_s: float = 300.0,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ns = namespace
        self._max = max_size
        self._ttl = ttl_s
        self._retry = retry_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, DeviceAttributes | None]] = OrderedDict()
        self._down_until = 0.0
        self.misses = 0  # lookups answered without Redis because it was unavailable
        self.unknown = 0  # devices Redis does not know
        self.redis_errors = 0

    @property
    def redis_available(self) -> bool:
        return self._clock() >= self._down_until

    def lookup_many(self, device_ids: Iterable[str]) -> dict[str, DeviceAttributes | None]:
        now = self._clock()
        result: dict[str, DeviceAttributes | None] = {}
        stale: list[str] = []
        for device_id in device_ids:
            if device_id in result:
                continue
            entry = self._entries.get(device_id)
            if entry is not None:
                result[device_id] = entry[1]
                if now - entry[0] <= self._ttl:
                    self._entries.move_to_end(device_id)
                    continue
            stale.append(device_id)
        if stale:
            fetched = self._fetch(stale, now)
            if fetched is None:
                self.misses += sum(1 for d in stale if d not in result)
                for d in stale:
                    result.setdefault(d, None)
            else:
                result.update(fetched)
        return result

    def _fetch(self, device_ids: list[str], now: float) -> dict[str, DeviceAttributes | None] | None:
        if now < self._down_until:
            return None
        try:
            pipe = self._client.pipeline(transaction=False)
            for device_id in device_ids:
                pipe.hgetall(device_key(self._ns, device_id))
            raws = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            self.redis_errors += 1
            self._down_until = now + self._retry
            return None
        fetched: dict[str, DeviceAttributes | None] = {}
        for device_id, raw in zip(device_ids, raws, strict=True):
            attrs = _from_hash(device_id, raw) if raw else None
            if attrs is None:
                self.unknown += 1
            fetched[device_id] = attrs
            self._entries[device_id] = (now, attrs)
            self._entries.move_to_end(device_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return fetched
