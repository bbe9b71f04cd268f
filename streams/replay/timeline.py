"""The decision timeline as JSON lines (one decision per line, stable key order)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import IO, Any

from gates.events import Decision
from streams.replay.timerange import format_ms

__all__ = ["decision_json", "write_timeline"]


def decision_json(d: Decision, origin: str) -> dict[str, Any]:
    out = asdict(d)
    out["reasons"] = [asdict(r) for r in d.reasons]
    out["signature"] = d.signature.hex() if d.signature else None  # bytes are not JSON
    out["window_end"] = format_ms(d.window_end_ms)
    out["origin"] = origin  # "replay" | "live"
    return out


def write_timeline(fo: IO[str], decisions: Iterable[Decision], origin: str = "replay") -> int:
    n = 0
    for d in decisions:
        fo.write(json.dumps(decision_json(d, origin), sort_keys=True) + "\n")
        n += 1
    return n
