"""No module of gates/ or streams/ grows past 500 lines: a module that large holds several
concerns, and is split along them (the ingest loop's checkpoints, the executor's decisions)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500


def test_no_module_over_500_lines() -> None:
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for pkg in ("gates", "streams")
        for p in (ROOT / pkg).rglob("*.py")
    }
    assert len(sizes) > 100
    assert {m: n for m, n in sizes.items() if n > LIMIT} == {}
