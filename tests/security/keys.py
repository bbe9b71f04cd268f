"""Test signing keys (never used outside tests)."""

from __future__ import annotations

import base64
import hashlib


def key_b64(name: str) -> str:
    return base64.b64encode(hashlib.sha256(f"fleetgate-test-key-{name}".encode()).digest()).decode()


def keys_env(*names: str, active: str = "") -> dict[str, str]:
    env = {"FLEETGATE_SIGNING_KEYS": ",".join(f"{n}:{key_b64(n)}" for n in names)}
    if active:
        env["FLEETGATE_SIGNING_KEY_ID"] = active
    return env
