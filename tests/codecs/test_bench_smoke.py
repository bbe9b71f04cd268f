"""The decode benchmark runs end to end with a tiny count and prints its ratio (no speed asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_decode_runs_and_prints_ratio() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "decode.py"), "--count", "2000", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "records/s per core" in out
    assert "ratio" in out
