import pytest

from gates.windows import window_end, window_index, window_start, windows_closed_by

CASES = [
    # t_ms, size, start, end
    (0, 1000, 0, 1000),
    (999, 1000, 0, 1000),
    (1000, 1000, 1000, 2000),  # half-open: the end belongs to the next window
    (1001, 1000, 1000, 2000),
    (-1, 1000, -1000, 0),  # negative times floor towards minus infinity
    (-1000, 1000, -1000, 0),
    (-1001, 1000, -2000, -1000),
    (1_700_000_123_456, 300_000, 1_700_000_100_000, 1_700_000_400_000),
    (7, 1, 7, 8),
]


@pytest.mark.parametrize(("t", "size", "start", "end"), CASES)
def test_window_bounds(t: int, size: int, start: int, end: int) -> None:
    assert window_start(t, size) == start
    assert window_end(t, size) == end
    assert start <= t < end
    assert window_index(t, size) * size == start


@pytest.mark.parametrize(("wm", "closed"), [(0, 0), (999, 0), (1000, 1), (2500, 2), (-1, -1)])
def test_windows_closed_by(wm: int, closed: int) -> None:
    # window i is closed once the watermark reaches its end (i + 1) * size
    assert windows_closed_by(wm, 1000) == closed


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        window_start(5, 0)
