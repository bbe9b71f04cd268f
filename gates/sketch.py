"""A mergeable DDSketch: quantiles with bounded relative error.

Values map to logarithmic buckets ``ceil(log_gamma(x))`` with
``gamma = (1 + alpha) / (1 - alpha)``; any quantile estimate is within a relative
error ``alpha`` of some sample of the right rank.  Merging adds bucket counts, so
merges are exact, associative and commutative.  Values are clamped to
``[MIN_VALUE, MAX_VALUE]`` which bounds the number of buckets (about 1,400 at 1%).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DDSketch", "MAX_VALUE", "MIN_VALUE", "bucket"]

MIN_VALUE = 1e-3
MAX_VALUE = 1e9


def bucket(value: float, log_gamma: float) -> int:
    """The bucket of ``value`` in a sketch whose ``_log_gamma`` is ``log_gamma``."""
    v = MIN_VALUE if value < MIN_VALUE else (MAX_VALUE if value > MAX_VALUE else value)
    return math.ceil(math.log(v) / log_gamma)


class DDSketch:
    __slots__ = ("alpha", "bins", "count", "_gamma", "_log_gamma")

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self._gamma)
        self.bins: dict[int, int] = {}
        self.count = 0

    def add(self, value: float, n: int = 1) -> None:
        self.add_bucket(bucket(value, self._log_gamma), n)

    def add_bucket(self, i: int, n: int = 1) -> None:
        """Count ``n`` values of bucket ``i`` (from :func:`bucket`, for callers that add one value
        to several sketches of the same alpha)."""
        bins = self.bins
        bins[i] = bins.get(i, 0) + n
        self.count += n

    def merge(self, other: DDSketch) -> None:
        if other.alpha != self.alpha:
            raise ValueError("cannot merge sketches with different alpha")
        bins = self.bins
        for i, c in other.bins.items():
            bins[i] = bins.get(i, 0) + c
        self.count += other.count

    def value_at_rank(self, rank: float) -> float | None:
        """Estimate of the sample with 0-based ``rank`` (clamped to the sample)."""
        if self.count <= 0:
            return None
        r = min(max(rank, 0.0), self.count - 1)
        seen = 0
        for i in sorted(self.bins):
            seen += self.bins[i]
            if seen > r:
                return 2.0 * self._gamma**i / (self._gamma + 1.0)
        return None  # pragma: no cover - counts and bins always agree

    def quantile(self, q: float) -> float | None:
        """Estimate of the ``q``-quantile, ``None`` when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        return self.value_at_rank(q * (self.count - 1))

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.alpha, "b": [[i, self.bins[i]] for i in sorted(self.bins)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DDSketch:
        s = cls(float(d["a"]))
        for i, c in d["b"]:
            s.bins[int(i)] = int(c)
            s.count += int(c)
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DDSketch) and self.alpha == other.alpha and self.bins == other.bins

    __hash__ = None  # type: ignore[assignment]
