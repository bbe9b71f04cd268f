"""Direct standardization of a latency baseline by connectivity profile.

Latency is a property of the link: the quantile of a population that mixes always-on, cellular
and sleepy devices sits in one link's mode or another's by the mix.  Comparing a treated side
with a baseline of another mix compares mixes; weighting the baseline to the treated mix
compares link by link.
"""

from __future__ import annotations

from dataclasses import dataclass

from gates.sketch import DDSketch

__all__ = ["RateParts", "Standardized", "StandardizedRate", "Strata", "standardize", "standardize_rate"]

Strata = tuple[tuple[str, DDSketch | None, DDSketch | None], ...]  # (profile, treated, baseline)
_SCALE = 1_000_000  # weights as integer bin counts: rounding moves a quantile by < 1e-4 of a rank


@dataclass(frozen=True)
class Standardized:
    """Treated latency of the profiles compared, and the baseline reweighted to their mix."""

    treated: DDSketch
    baseline: DDSketch  # bins scaled: read ranks from ``baseline.count``, size intervals by ``n_eff``
    n_eff: float  # Kish effective sample size of the reweighted baseline
    left_out: tuple[str, ...]  # treated profiles the baseline has too few samples of


def standardize(parts: Strata, min_baseline: int) -> Standardized | None:
    """Direct standardization by connectivity profile, or None when there is nothing to weigh.

    Each profile with at least ``min_baseline`` baseline samples is compared: the treated side
    keeps its samples of those profiles, and the baseline's samples of profile p are weighted so
    that p has the treated share s_p of the baseline's weight.  The baseline then has the mix of
    the treated side and ``n_eff = 1 / sum(s_p^2 / n0_p)`` samples' worth of precision.  A profile
    the baseline lacks cannot be compared and is left out of both sides.
    """
    present = [(p, t, b) for p, t, b in parts if t is not None and t.count]
    kept = [(p, t, b) for p, t, b in present if b is not None and b.count >= min_baseline]
    if not kept:
        return None
    alpha = kept[0][1].alpha
    treated = DDSketch(alpha)
    for _, t, _ in kept:
        treated.merge(t)
    total = treated.count
    n_eff = 1.0 / sum((t.count / total) ** 2 / b.count for _, t, b in kept)
    baseline = DDSketch(alpha)
    for _, t, b in kept:
        w = _SCALE * (t.count / total) / b.count
        for i, c in b.bins.items():
            n = round(c * w)
            if n:
                baseline.bins[i] = baseline.bins.get(i, 0) + n
                baseline.count += n
    left = tuple(p for p, _, b in present if b is None or b.count < min_baseline)
    return Standardized(treated, baseline, n_eff, left)


@dataclass(frozen=True)
class StandardizedRate:
    """Treated counts of the profiles compared, and a baseline with the weighted baseline's rate
    and relative variance, as counts: ``x0 + 0.5`` events over ``n0`` device-windows."""

    x1: int
    n1: int  # reporting device-windows
    reports1: int
    x0: float
    n0: float
    left_out: tuple[str, ...]


# (profile, treated events, treated device-windows, treated reports, (baseline events, device-windows))
RateParts = tuple[tuple[str, int, int, int, tuple[int, int] | None], ...]


def standardize_rate(parts: RateParts, min_baseline: int) -> StandardizedRate | None:
    """Indirect standardization of a per-device-hour rate by connectivity profile.

    The baseline's rate becomes the treated side's expected count at each profile's baseline rate,
    ``E = sum(n1_p * r0_p)``, with variance ``sum((n1_p / n0_p)^2 x0_p)``; one profile gives back
    the plain baseline.  A profile with fewer than ``min_baseline`` baseline device-windows is left
    out of both sides.  The 0.5 continuity correction is shared out by baseline size.
    """
    present = [(p, x1, n1, r1, b) for p, x1, n1, r1, b in parts if n1 > 0]
    kept = [(p, x1, n1, r1, b) for p, x1, n1, r1, b in present if b is not None and b[1] >= min_baseline]
    if not kept:
        return None
    total0 = sum(b[1] for *_, b in kept if b is not None)
    n1 = sum(n for _, _, n, _, _ in kept)
    expected = variance = 0.0
    for _, _, n, _, b in kept:
        assert b is not None
        x0 = b[0] + 0.5 * b[1] / total0
        expected += n * x0 / b[1]
        variance += (n / b[1]) ** 2 * x0
    eq = expected * expected / variance  # events of a plain baseline with that relative variance
    left = tuple(p for p, *_, b in present if b is None or b[1] < min_baseline)
    return StandardizedRate(
        x1=sum(x for _, x, _, _, _ in kept),
        n1=n1,
        reports1=sum(r for _, _, _, r, _ in kept),
        x0=max(0.0, eq - 0.5),
        n0=eq * n1 / expected,
        left_out=left,
    )
