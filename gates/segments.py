"""Rolling health of the whole fleet per segment, kept also while no rollout runs.

A *segment* is (firmware version, config version, model, firmware generation, region,
connectivity profile, customer, criticality).  Every report of every device counts in its segment's window
aggregate, and every device in its segment's window-end snapshot (population, reporting,
expected, offline), whether or not a rollout selects it.  When a rollout first appears, the
partition hands the segments of its previous version that match its stage selectors, for the
look-back before the plan, to the rollout as baseline windows: a stage that selects all of
its selector, or whose first command follows its plan by a second, still has a pre-update
baseline of its devices' recent history.

A stage's segment baseline holds exactly the segments its selector matches: a selector on an
attribute segments do not carry (``site``) gives that stage no segment baseline (it is judged
against its rollout's own control and pre-update windows), because matching "any" there would
compare the stage with a different population (an internal always-on canary against the whole
fleet's cellular latency).

Memory is bounded: windows older than the look-back are evicted, and at most
``MAX_SEGMENTS`` distinct segments are kept per window (later ones share one overflow
segment per version, which no selector matches).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from gates.aggregates import KNOWN_SEP, WindowAggregate

if TYPE_CHECKING:
    from gates.cohorts import RolloutInfo
    from gates.policy import GatePolicy

__all__ = ["MAX_SEGMENTS", "SEGMENT_ATTRS", "SegmentHistory"]

MAX_SEGMENTS = 2048
# model, firmware_generation, region, connectivity_profile (the slice, see gates.slices), then
# customer, criticality (ATTRIBUTE_NAMES positions)
SEGMENT_ATTRS = (0, 1, 2, 5, 3, 4)
_SLICE = slice(2, 6)  # a segment's slice fields
_OTHER = "\x00other"
Segment = tuple[str, ...]  # (firmware, config, model, generation, region, profile, customer, criticality)
_UNKNOWN = ("unknown", "unknown", "unknown", "unknown", "unknown", "always-on", "unknown")


class SegmentHistory:
    """Per window index, per segment: a :class:`WindowAggregate` of the whole fleet."""

    def __init__(self, policy: GatePolicy) -> None:
        self.keep = policy.lookback_windows + 1
        self.windows: dict[int, dict[Segment, WindowAggregate]] = {}
        self._segs: dict[Segment, Segment] = {}  # one shared tuple per distinct segment

    def segment(self, firmware: str, config: str, attrs: tuple[str, ...] | None) -> Segment:
        """The segment of a report (callers cache it per device and version)."""
        vals = attrs if attrs is not None else _UNKNOWN
        seg: Segment = (firmware, config, *(vals[i] for i in SEGMENT_ATTRS))
        got = self._segs.get(seg)
        if got is None:
            if len(self._segs) >= MAX_SEGMENTS:
                seg = (firmware, config, *(_OTHER for _ in SEGMENT_ATTRS))
                got = self._segs.get(seg)
                if got is not None:
                    return got
            got = self._segs[seg] = tuple(sys.intern(v) for v in seg)
        return got

    def agg(self, idx: int, seg: Segment) -> WindowAggregate:
        win = self.windows.get(idx)
        if win is None:
            win = self.windows[idx] = {}
        a = win.get(seg)
        if a is None:
            a = win[seg] = WindowAggregate()
        return a

    def evict(self, closed: int) -> None:
        """Forget windows the look-back before ``closed`` no longer reaches."""
        for idx in [i for i in self.windows if i < closed - self.keep]:
            del self.windows[idx]

    def backfill(self, info: RolloutInfo, closed: int) -> list[tuple[int, int, str, WindowAggregate]]:
        """``(window index, selector mask, slice, aggregate)`` of the previous version's segments
        that match the rollout's stage selectors, in closed windows of the look-back."""
        out: list[tuple[int, int, str, WindowAggregate]] = []
        for idx in sorted(i for i in self.windows if closed - self.keep <= i < closed):
            by_mask: dict[tuple[int, str], WindowAggregate] = {}
            for seg, agg in sorted(self.windows[idx].items()):
                version = seg[0] if info.firmware else seg[1]
                if version != info.previous:
                    continue
                mask = _mask(info, seg)
                if mask:
                    k = (mask, KNOWN_SEP.join(seg[_SLICE]))
                    m = by_mask.get(k)
                    if m is None:
                        m = by_mask[k] = WindowAggregate()
                    m.merge(agg)
            out.extend((idx, mask, sl, a) for (mask, sl), a in sorted(by_mask.items()))
        return out

    def to_dict(self) -> list[Any]:
        return [
            [i, [[list(s), a.to_dict()] for s, a in sorted(win.items())]]
            for i, win in sorted(self.windows.items())
        ]

    def load(self, d: list[Any]) -> None:
        self.windows = {
            int(i): {self._intern(tuple(s)): WindowAggregate.from_dict(a) for s, a in win} for i, win in d
        }

    def _intern(self, seg: Segment) -> Segment:
        got = self._segs.get(seg)
        if got is None:
            got = self._segs[seg] = tuple(sys.intern(v) for v in seg)
        return got


def _mask(info: RolloutInfo, seg: Segment) -> int:
    """Stages whose selector the segment matches: every selector attribute must be one the
    segment carries, with an allowed value (the overflow segment matches none)."""
    if seg[2] == _OTHER:
        return 0
    values = dict(zip(SEGMENT_ATTRS, seg[2:], strict=True))
    mask = 0
    for i, sel in enumerate(info.selectors):
        if all(j in values and values[j] in allowed for j, allowed in sel):
            mask |= 1 << i
    return mask
