"""Small, ``math``-only statistics used by the gate rules.

All tests are one-sided at a configurable confidence level.  Proportions use the
Wilson score interval (absolute thresholds) or an Agresti-Caffo adjusted
two-proportion z-test against ``ratio x baseline``; event rates per exposure use a
Wald interval on the log rate ratio with a 0.5 continuity correction; quantiles use a
distribution-free order-statistic interval read from the sketch, widened by the
sketch's relative error.
"""

from __future__ import annotations

import math

__all__ = [
    "normal_quantile",
    "proportion_vs_baseline",
    "rate_ratio_interval",
    "sequential_z",
    "wilson_interval",
]

# Acklam's rational approximation of the inverse normal CDF (rel. error < 1.2e-9).
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425


def normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF, for ``0 < p < 1``."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        num = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
        return num / ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0)
    if p > 1.0 - _P_LOW:
        return -normal_quantile(1.0 - p)
    q = p - 0.5
    r = q * q
    num = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
    return num / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``(0, 1)`` when ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_vs_baseline(x1: int, n1: int, x0: int, n0: int, ratio: float) -> tuple[float, float, float]:
    """z statistic for ``p1 - ratio * p0`` (Agresti-Caffo adjusted), with the interval.

    Returns ``(z, low, high)`` where ``low/high`` bound ``p1 - ratio * p0`` at one
    standard error (the caller scales by its own ``z``).  ``z > 0`` means the treated
    proportion is above ``ratio x baseline``.
    """
    p1 = (x1 + 1) / (n1 + 2)
    p0 = (x0 + 1) / (n0 + 2)
    diff = p1 - ratio * p0
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + ratio * ratio * p0 * (1 - p0) / (n0 + 2))
    return diff / se, diff, se


def rate_ratio_interval(x1: int, e1: float, x0: int, e0: float, z: float) -> tuple[float, float, float]:
    """Estimate and interval of the ratio of two Poisson rates ``(x1/e1) / (x0/e0)``."""
    a = x1 + 0.5
    b = x0 + 0.5
    log_rr = math.log(a / e1) - math.log(b / e0)
    se = math.sqrt(1.0 / a + 1.0 / b)
    return math.exp(log_rr), math.exp(log_rr - z * se), math.exp(log_rr + z * se)


def sequential_z(n: int, alpha: float, n_star: int = 500) -> float:
    """Multiplier of ``sigma / sqrt(n)`` for an always-valid bound at sample size ``n``.

    The asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
    ("Time-uniform central limit theory and asymptotic confidence sequences", 2021, Thm 2.2),
    i.e. Robbins' normal-mixture boundary with a plug-in variance: with probability at least
    ``1 - alpha`` the running mean stays within ``sigma x sqrt(2 (n rho^2 + 1) / (n^2 rho^2)
    x log(sqrt(n rho^2 + 1) / alpha))`` of the true mean *at every n at once*, so looking after
    every window does not inflate the false-alarm rate.  (The two-sided boundary at ``alpha`` is
    used for a one-sided test: conservative.)  ``rho`` is chosen to make the boundary tightest
    at ``n_star`` samples.
    """
    n = max(n, 1)
    lg = -2.0 * math.log(alpha)
    rho2 = (lg + math.log(lg + 1.0)) / n_star
    a = n * rho2
    return math.sqrt(2.0 * (a + 1.0) / a * math.log(math.sqrt(a + 1.0) / alpha))
