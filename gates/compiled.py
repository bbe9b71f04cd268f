"""The fold's compiled form: which modules mypyc compiles, and whether they run compiled here.

The per-event fold (window aggregates, device state, sketches, the per-partition engine) is
compiled to C by mypyc from these very sources when a C compiler is present (``make venv``;
``setup.py``); the compiled module sits next to its ``.py`` and Python imports it first.  The
sources stay the reference: without a compiler, or after ``make pure``, the same code runs
interpreted, and ``tests/gates/test_compiled_fold.py`` requires both to give the same partials,
snapshots and decisions.  The records of :mod:`gates.events` are not compiled: they stay cheap
to build from the native decoder and picklable for parallel replay.

This file is also read on its own by ``setup.py`` (no package import): keep it free of imports
from :mod:`gates`.
"""

from __future__ import annotations

import importlib

__all__ = ["MODULES", "compiled_modules", "describe"]

# Imported by the fold of every event, or holding the state it touches.
MODULES = (
    "gates.sketch",
    "gates.aggregates",
    "gates.devices",
    "gates.cohorts",
    "gates.segments",
    "gates.partial_base",
    "gates.telemetry_fold",
    "gates.exposure",
    "gates.flush",
    "gates.partial",
    "gates.partition",
)


def compiled_modules() -> list[str]:
    """The modules of :data:`MODULES` this process imported as compiled extensions."""
    out = []
    for name in MODULES:
        path = getattr(importlib.import_module(name), "__file__", "") or ""
        if not path.endswith(".py"):
            out.append(name)
    return out


def describe() -> str:
    """One line for logs and benchmarks: how the fold runs in this process."""
    n = len(compiled_modules())
    if n == len(MODULES):
        return "fold: compiled (mypyc)"
    if n == 0:
        return "fold: pure Python (no compiled modules; `make venv` builds them when a C compiler is present)"
    return f"fold: {n} of {len(MODULES)} modules compiled (a partial build: rerun `make venv`)"
