"""Optional compiled fold: with FLEETGATE_COMPILE=1, mypyc compiles the modules listed in
gates/compiled.py (the metadata is in pyproject.toml).

    FLEETGATE_COMPILE=1 python setup.py build_ext --inplace   # what `make venv` runs
    FLEETGATE_COMPILE=1 python -m build --wheel              # a platform wheel with the fold compiled

Without the variable the package is pure Python.
"""

import os
import runpy
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("FLEETGATE_COMPILE") == "1":
    from mypyc.build import mypycify

    here = Path(__file__).resolve().parent
    modules = runpy.run_path(str(here / "gates" / "compiled.py"))["MODULES"]
    ext_modules = mypycify(
        [m.replace(".", "/") + ".py" for m in modules], opt_level="3", group_name="gates._fold"
    )

setup(ext_modules=ext_modules)
