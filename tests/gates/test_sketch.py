import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gates.sketch import DDSketch


def _exact(values: list[float], q: float) -> float:
    return sorted(values)[round(q * (len(values) - 1))]


def test_quantiles_within_relative_error() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5, 1) for _ in range(20_000)]
    s = DDSketch(0.01)
    for v in values:
        s.add(v)
    for q in (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
        est = s.quantile(q)
        assert est is not None
        assert math.isclose(est, _exact(values, q), rel_tol=0.0101)


def test_empty_and_roundtrip() -> None:
    s = DDSketch(0.02)
    assert s.quantile(0.5) is None
    s.add(12.5)
    s.add(0.0)  # clamped to the smallest bucket
    assert DDSketch.from_dict(s.to_dict()) == s


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1e6), min_size=1, max_size=200), st.integers(0, 200))
def test_merge_is_exact(values: list[float], cut: int) -> None:
    whole, left, right = DDSketch(), DDSketch(), DDSketch()
    for v in values:
        whole.add(v)
    for v in values[:cut]:
        left.add(v)
    for v in values[cut:]:
        right.add(v)
    right.merge(left)
    assert right == whole
    assert right.count == len(values)
    assert right.quantile(0.95) == whole.quantile(0.95)
