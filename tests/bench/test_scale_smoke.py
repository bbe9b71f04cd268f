"""bench/scale.py runs end to end on a small fleet and its accounting holds (no target asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tests.pipeline.harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def _scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_bench_accounts_for_memory_snapshots_and_recovery(
    bootstrap: str, redis_url: str, capsys: object
) -> None:
    devices = 5_000
    r = _scale().main(["--devices", str(devices), "--metrics-port", str(free_port()), "--timeout", "120"])
    # Nearly every device reported once, and the snapshots hold exactly the devices that did.
    assert 0.9 * devices <= r["tracked"] <= devices
    assert r["events"] >= r["tracked"]
    snaps = r["snapshots"]
    assert len(snaps) == r["partitions"] == 12
    assert all(s["devices"] > 0 and s["bytes"] > 0 for s in snaps)
    assert all(s["restore_s"] > 0 and s["snapshot_s"] > 0 for s in snaps)
    assert r["worker_restore_s"] > 0
    assert r["rss_empty"] > 0 and r["rss_full"] > 0 and r["rss_restored"] > 0
    # The kill came after a tail the worker had to read again: recovery was detected, in order.
    assert r["tail_seen"] > 0
    assert 0 < r["recovery_folded_s"] <= r["recovery_committed_s"]
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    for needle in ("RSS growth per tracked device", "restore median", "kill -9 after a tail", "load average"):
        assert needle in out
