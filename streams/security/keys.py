"""Signing keys from configuration: ``FLEETGATE_SIGNING_KEYS=kid1:BASE64,kid2:BASE64``.

Several keys may be valid at once (rotation); ``FLEETGATE_SIGNING_KEY_ID`` names the one this
process signs with.  Keys are at least 32 bytes (256 bits) after base64 decoding.  This module
does not import ``streams.config`` so the configuration can validate with it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_KEYS", "MIN_KEY_BYTES", "Keyring", "KeyringError", "parse_keyring"]

MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 1024
MAX_KEYS = 32
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyringError(ValueError):
    """The key list is malformed; the message never contains key material."""


@dataclass(frozen=True)
class Keyring:
    """Valid verification keys by id, and the id of the signing key ('' when this process only verifies)."""

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    active: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def key(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={sorted(self.keys)}, active={self.active!r})"


def parse_keyring(spec: str, active: str = "") -> Keyring:
    """Parse ``kid:base64[,kid:base64...]``.

    ``active`` must be one of the ids; it defaults to the only key when there is one.  With several
    keys and no ``active`` the keyring verifies but cannot sign (e.g. an executor).
    """
    spec = spec.strip()
    if not spec:
        if active:
            raise KeyringError(f"FLEETGATE_SIGNING_KEY_ID={active!r} but FLEETGATE_SIGNING_KEYS is empty")
        return Keyring()
    keys: dict[str, bytes] = {}
    items = [i.strip() for i in spec.split(",") if i.strip()]
    if len(items) > MAX_KEYS:
        raise KeyringError(f"FLEETGATE_SIGNING_KEYS: at most {MAX_KEYS} keys, got {len(items)}")
    for n, item in enumerate(items, 1):
        kid, sep, b64 = item.partition(":")
        kid = kid.strip()
        if not sep or not KEY_ID.match(kid):
            raise KeyringError(
                f"FLEETGATE_SIGNING_KEYS: entry {n} must be KEY_ID:BASE64 with KEY_ID of 1-64 letters, "
                "digits, '.', '_' or '-'"
            )
        if kid in keys:
            raise KeyringError(f"FLEETGATE_SIGNING_KEYS: key id {kid!r} appears twice")
        try:
            raw = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyringError(f"FLEETGATE_SIGNING_KEYS: key {kid!r} is not valid base64") from None
        if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
            raise KeyringError(
                f"FLEETGATE_SIGNING_KEYS: key {kid!r} has {len(raw)} bytes, needs {MIN_KEY_BYTES}..{MAX_KEY_BYTES}"
            )
        keys[kid] = raw
    if not active and len(keys) == 1:
        active = next(iter(keys))
    if active and active not in keys:
        raise KeyringError(f"FLEETGATE_SIGNING_KEY_ID={active!r} is not in FLEETGATE_SIGNING_KEYS")
    return Keyring(keys, active)
