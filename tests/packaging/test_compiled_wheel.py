"""The compiled fold's wheel: ``FLEETGATE_COMPILE=1`` builds a platform wheel that holds every
module of :data:`gates.compiled.MODULES` compiled, and installed into a fresh virtualenv (no
source tree on the path) the fold runs compiled and folds like the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from gates.compiled import MODULES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CC = (sysconfig.get_config_var("CC") or "cc").split()[0]

if shutil.which(CC) is None:
    pytest.skip(f"no C compiler ({CC}): the fold cannot be compiled here", allow_module_level=True)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)  # noqa: S603
    assert proc.returncode == 0, (
        f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def test_compiled_wheel_installs_and_runs_the_fold_compiled(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "gates", src / "gates", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    (src / "streams").mkdir()  # the wheel's other package; only gates/ is compiled
    (src / "streams" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"FLEETGATE_COMPILE": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"),
          str(src)], tmp_path, env)  # fmt: skip
    (wheel,) = (tmp_path / "w").glob("fleetgate-*.whl")
    assert not wheel.name.endswith("-none-any.whl"), wheel.name  # a platform wheel
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    for module in MODULES:
        stem = module.replace(".", "/")
        assert any(n.startswith(stem + ".") and n.endswith(".so") for n in names), module
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-index", "--no-deps", str(wheel)],
         tmp_path, env)  # fmt: skip
    # the dependencies of gates/ (PyYAML) from this interpreter's site-packages, appended after
    # the fresh one: gates itself can only come from the wheel
    deps = sysconfig.get_paths()["purelib"]
    probe = (
        f"import sys; sys.path.append({deps!r}); import gates, gates.compiled as c; "
        "assert gates.__file__.startswith(sys.prefix), gates.__file__; print(c.describe())"
    )
    out = _run([str(py), "-I", "-c", probe], tmp_path, env)
    assert out.strip() == "fold: compiled (mypyc)", out
