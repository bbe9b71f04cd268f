"""Time ranges for replay and export: ISO-8601 (UTC) or epoch milliseconds, half-open ``[from, to)``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from streams.replay.errors import ReplayError

__all__ = ["TimeRange", "format_ms", "parse_time"]

_MIN_MS = 946_684_800_000  # 2000-01-01: anything earlier is a unit mistake (seconds?)
_MAX_MS = 4_102_444_800_000  # 2100-01-01


def parse_time(text: str, flag: str) -> int:
    """``2024-05-01T12:00:00Z`` / ``...+02:00`` / naive (taken as UTC) / epoch ms -> epoch ms."""
    raw = text.strip()
    if raw.lstrip("-").isdigit():
        ms = int(raw)
        if not _MIN_MS <= ms < _MAX_MS:
            hint = " (epoch seconds? multiply by 1000)" if _MIN_MS // 1000 <= ms < _MAX_MS // 1000 else ""
            raise ReplayError(f"{flag} {text!r}: epoch milliseconds out of range 2000..2100{hint}")
        return ms
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReplayError(
            f"{flag} {text!r}: not a time; use ISO-8601 UTC like 2024-05-01T12:00:00Z or epoch milliseconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # documented: a time without a zone is UTC
    ms = int(dt.timestamp() * 1000)
    if not _MIN_MS <= ms < _MAX_MS:
        raise ReplayError(f"{flag} {text!r}: outside 2000..2100")
    return ms


def format_ms(ms: int) -> str:
    """Epoch ms -> ``2024-05-01T12:00:00.000Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Kafka record timestamps in ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> TimeRange:
        if start is None or end is None:
            raise ReplayError("both --from and --to are required (ISO-8601 UTC or epoch milliseconds)")
        s, e = parse_time(start, "--from"), parse_time(end, "--to")
        if e <= s:
            raise ReplayError(
                f"--to {format_ms(e)} is not after --from {format_ms(s)}: the range [from, to) is empty"
            )
        return cls(s, e)

    def __str__(self) -> str:
        return f"[{format_ms(self.start_ms)}, {format_ms(self.end_ms)})"
