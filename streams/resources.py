"""Files fleetgate ships as package data: the Avro schemas and the gate policies.

``schemas/`` and ``policies/`` at the top of the source tree are the one place each is defined.
``streams/schemas`` and ``streams/policies`` are relative symlinks to them, so one lookup through
``importlib.resources`` works in a checkout, in an editable install and in an installed wheel:
the build follows the links and copies the files they point to into the package
(``[tool.setuptools.package-data]`` in pyproject.toml).  Nothing here knows where the source
tree is.

A policy is named either by a file path or by the stem of a shipped policy (``default``,
``demo``); an existing file wins, so a local ``./demo`` file is never shadowed.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["policy_bytes", "policy_exists", "schema_dir", "shipped_policies"]

_POLICY_SUFFIX = ".yaml"


def schema_dir() -> Traversable:
    """The shipped ``schemas/`` directory (``*.avsc``)."""
    return files("streams") / "schemas"


def _policy_dir() -> Traversable:
    return files("streams") / "policies"


def shipped_policies() -> list[str]:
    """Names of the policies that ship with fleetgate, e.g. ``["default", "demo"]``."""
    return sorted(
        p.name.removesuffix(_POLICY_SUFFIX)
        for p in _policy_dir().iterdir()
        if p.name.endswith(_POLICY_SUFFIX) and p.is_file()
    )


def policy_exists(ref: str) -> bool:
    """Whether ``ref`` names a policy file or a shipped policy."""
    return Path(ref).is_file() or ref in shipped_policies()


def policy_bytes(ref: str) -> bytes:
    """The YAML of the policy file ``ref``, else of the shipped policy of that name.

    Raises FileNotFoundError naming the shipped policies when ``ref`` is neither.
    """
    path = Path(ref)
    if path.is_file():
        return path.read_bytes()
    if ref in shipped_policies():
        return (_policy_dir() / f"{ref}{_POLICY_SUFFIX}").read_bytes()
    names = ", ".join(shipped_policies())
    raise FileNotFoundError(f"{ref!r}: no such file, and no shipped policy of that name ({names})")
