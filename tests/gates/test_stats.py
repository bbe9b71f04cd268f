import math

import pytest

from gates.stats import normal_quantile, proportion_vs_baseline, rate_ratio_interval, wilson_interval


@pytest.mark.parametrize(
    ("p", "z"),
    [(0.5, 0.0), (0.975, 1.959963985), (0.95, 1.644853627), (0.99, 2.326347874), (0.001, -3.090232306)],
)
def test_normal_quantile(p: float, z: float) -> None:
    assert math.isclose(normal_quantile(p), z, abs_tol=1e-7)


def test_normal_quantile_domain() -> None:
    with pytest.raises(ValueError):
        normal_quantile(1.0)


def test_wilson_known_values() -> None:
    lo, hi = wilson_interval(10, 100, 1.959963985)
    assert math.isclose(lo, 0.0552, abs_tol=5e-4)
    assert math.isclose(hi, 0.1744, abs_tol=5e-4)
    assert wilson_interval(0, 0, 1.96) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 50, 1.96)
    assert lo == 0.0 and 0 < hi < 0.08


def test_two_proportion_direction() -> None:
    z, _, _ = proportion_vs_baseline(50, 100, 10, 100, 1.0)
    assert z > 3
    z, _, _ = proportion_vs_baseline(90, 100, 99, 100, 0.95)
    assert z < 0
    # identical proportions against ratio 1 are not significant either way
    z, _, _ = proportion_vs_baseline(30, 100, 30, 100, 1.0)
    assert abs(z) < 1e-9


def test_rate_ratio() -> None:
    rr, lo, hi = rate_ratio_interval(100, 10.0, 50, 10.0, 1.96)
    assert lo < rr < hi
    assert 1.4 < lo < 2.0 < hi
