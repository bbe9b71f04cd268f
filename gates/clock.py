"""Device clocks: a robust running estimate of each device's offset from the broker's clock.

A report's offset is ``ingest time - event time``: delivery delay plus the device clock's
error.  Delivery delay is small for a device that is online and large for the reports a
device buffered while away, so a single offset says nothing; a clock error shows as the
*same* offset, within ``SYNC_TOLERANCE_MS``, on ``AGREE`` consecutive reports (buffered
reports sent together differ by their report interval, so they never agree).  Once
established, the offset corrects every later event of the device (reports and acks) until
``AGREE`` reports agree on another one.  Offsets within the tolerance count as in sync (no
correction).  Corrected times never exceed the ingest time (nothing reports from the future),
and times further than ``clock_skew`` from the ingest time are replaced by it.
"""

from __future__ import annotations

from gates.devices import DeviceState

__all__ = ["AGREE", "SYNC_TOLERANCE_MS", "corrected", "observe_offset"]

SYNC_TOLERANCE_MS = 30_000
AGREE = 3


def observe_offset(dev: DeviceState, event_ms: int, ingest_ms: int) -> None:
    """Feed one report's offset to the device's estimator."""
    d = ingest_ms - event_ms
    if dev.cn and -SYNC_TOLERANCE_MS <= d - dev.cand <= SYNC_TOLERANCE_MS:
        if dev.cn < AGREE:
            dev.cn += 1
            if dev.cn == AGREE:
                c = dev.cand
                dev.off = c if c > SYNC_TOLERANCE_MS or c < -SYNC_TOLERANCE_MS else 0
    else:
        dev.cand = d
        dev.cn = 1


def corrected(dev: DeviceState | None, event_ms: int, ingest_ms: int, skew_ms: int) -> tuple[int, bool]:
    """``(time to judge the event at, whether it differs from the device's clock)``."""
    if event_ms - ingest_ms > skew_ms or ingest_ms - event_ms > skew_ms:
        return ingest_ms, True
    t = event_ms + dev.off if dev is not None else event_ms
    if t > ingest_ms:
        t = ingest_ms
    return t, t - event_ms > SYNC_TOLERANCE_MS or event_ms - t > SYNC_TOLERANCE_MS
