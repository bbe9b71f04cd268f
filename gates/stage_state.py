"""Per (rollout, stage) decision state: hysteresis streaks, cumulative counts, acknowledgement."""

from __future__ import annotations

from typing import Any

from gates.aggregates import WindowAggregate
from gates.events import Action

__all__ = ["CUM_FIELDS", "StageState", "add_cum"]

# treated event counts that are kept cumulatively per stage (not windowed)
CUM_FIELDS = (
    "terminal",
    "failures",
    "commanded",
    "acked",
    "applied",
    "healthy",
    "ack_timeouts",
    "silence_suspects",
)
_NEG = -(2**62)


class StageState:
    """Per (rollout, stage) decision state."""

    __slots__ = (
        "last_action",
        "streaks",
        "cum",
        "cum_at_ack",
        "ack_upto_ms",
        "first_exposed",
        "pre_baseline",
        "pre_decode",
        "cum_slices",
        "ack_slices",
        "pre_slices",
        "slice_stops",
    )

    def __init__(self) -> None:
        self.last_action: Action | None = None
        self.streaks: dict[str, list[int]] = {}  # name -> [window idx, count before it, count]
        self.cum = WindowAggregate()
        self.cum_at_ack = WindowAggregate()
        self.ack_upto_ms = _NEG
        self.first_exposed: int | None = None
        self.pre_baseline: WindowAggregate | None = None
        # previous-version reports and decode errors, rollout-wide, in the same look-back
        self.pre_decode: WindowAggregate | None = None
        # the same per slice of the stage's devices (see gates.slices)
        self.cum_slices: dict[str, WindowAggregate] = {}
        self.ack_slices: dict[str, WindowAggregate] = {}
        self.pre_slices: dict[str, WindowAggregate] = {}
        # slices.action: slice -- per culprit slice label, the stop last emitted and the slice's
        # (dimension, value) pairs (gates.slice_stops)
        self.slice_stops: dict[str, tuple[Action, tuple[tuple[str, str], ...]]] = {}

    def streak(self, name: str, idx: int, hit: bool | None) -> int:
        """Consecutive-window counter; ``hit=None`` (pending) keeps it, re-evaluation is idempotent."""
        s = self.streaks.get(name)
        if s is None:
            s = self.streaks[name] = [idx, 0, 0]
        elif s[0] != idx:
            s[0], s[1] = idx, s[2]
        s[2] = s[1] + 1 if hit else (s[1] if hit is None else 0)
        return s[2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.last_action.value if self.last_action else None,
            "s": self.streaks,
            "c": self.cum.to_dict(),
            "ca": self.cum_at_ack.to_dict(),
            "u": self.ack_upto_ms,
            "f": self.first_exposed,
            "p": self.pre_baseline.to_dict() if self.pre_baseline is not None else None,
            "pd": self.pre_decode.to_dict() if self.pre_decode is not None else None,
            "cs": {k: v.to_dict() for k, v in sorted(self.cum_slices.items())},
            "as": {k: v.to_dict() for k, v in sorted(self.ack_slices.items())},
            "ps": {k: v.to_dict() for k, v in sorted(self.pre_slices.items())},
            "ss": {k: [a.value, [list(p) for p in v]] for k, (a, v) in sorted(self.slice_stops.items())},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageState:
        s = cls()
        s.last_action = Action(d["a"]) if d["a"] else None
        s.streaks = {k: list(v) for k, v in d["s"].items()}
        s.cum = WindowAggregate.from_dict(d["c"])
        s.cum_at_ack = WindowAggregate.from_dict(d["ca"])
        s.ack_upto_ms = d["u"]
        s.first_exposed = d["f"]
        s.pre_baseline = WindowAggregate.from_dict(d["p"]) if d["p"] is not None else None
        s.pre_decode = WindowAggregate.from_dict(d["pd"]) if d.get("pd") is not None else None
        s.cum_slices = {k: WindowAggregate.from_dict(v) for k, v in d.get("cs", {}).items()}
        s.ack_slices = {k: WindowAggregate.from_dict(v) for k, v in d.get("as", {}).items()}
        s.pre_slices = {k: WindowAggregate.from_dict(v) for k, v in d.get("ps", {}).items()}
        s.slice_stops = {  # absent in snapshots from before slice stops
            k: (Action(a), tuple((str(p[0]), str(p[1])) for p in v)) for k, (a, v) in d.get("ss", {}).items()
        }
        return s


def add_cum(cum: WindowAggregate, agg: WindowAggregate, sign: int = 1) -> None:
    for f in CUM_FIELDS:
        v = getattr(agg, f)
        if v:
            setattr(cum, f, getattr(cum, f) + sign * v)
