"""Integer-millisecond tumbling windows, half-open ``[start, end)``.

Window ``i`` of size ``size_ms`` covers ``[i * size_ms, (i + 1) * size_ms)``; negative
times floor towards minus infinity so every instant belongs to exactly one window.
"""

from __future__ import annotations

__all__ = ["window_end", "window_index", "window_start", "windows_closed_by"]


def window_index(t_ms: int, size_ms: int) -> int:
    """Index of the window holding ``t_ms``."""
    if size_ms <= 0:
        raise ValueError("window size must be positive")
    return t_ms // size_ms


def window_start(t_ms: int, size_ms: int) -> int:
    """Inclusive start of the window holding ``t_ms``."""
    return window_index(t_ms, size_ms) * size_ms


def window_end(t_ms: int, size_ms: int) -> int:
    """Exclusive end of the window holding ``t_ms``."""
    return window_start(t_ms, size_ms) + size_ms


def windows_closed_by(watermark_ms: int, size_ms: int) -> int:
    """Index one past the last window closed by ``watermark_ms``.

    A window is closed once the watermark has reached its end, so window ``i`` is
    closed iff ``(i + 1) * size_ms <= watermark_ms``.
    """
    return watermark_ms // size_ms
