"""`fleetgate keys generate|public`: Ed25519 key pairs for the gate and the operators."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from streams.config import Settings

__all__ = ["register"]


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)  # O_CREAT's mode does not apply to an existing file


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.security.keys import KeyringError, generate

    try:
        private, public = generate(args.key_id, args.signer)
    except KeyringError as exc:
        print(f"fleetgate: {exc}", file=sys.stderr)
        return 2
    if args.dir:
        d = Path(args.dir)
        if args.keep and (d / f"{args.key_id}.key").exists() and (d / f"{args.key_id}.pub").exists():
            print(f"{d / (args.key_id + '.key')}  kept (--keep)")
            return 0
        d.mkdir(parents=True, exist_ok=True)
        _write(d / f"{args.key_id}.key", private, 0o600)
        _write(d / f"{args.key_id}.pub", public, 0o644)
        print(f"{d / (args.key_id + '.key')}  private: FLEETGATE_SIGNING_KEYS of the {args.signer} only")
        print(f"{d / (args.key_id + '.pub')}  public: FLEETGATE_VERIFY_KEYS of executors and subscribers")
        return 0
    print(f"# private: only where {args.signer} signs (keep it secret)")
    print(f"FLEETGATE_SIGNING_KEYS={private}")
    print("# public: executors and subscribers (append to their list)")
    print(f"FLEETGATE_VERIFY_KEYS={public}")
    return 0


def _cmd_public(args: argparse.Namespace, settings: Settings) -> int:
    from streams.security.keys import public_entry

    keys = settings.signing_keys_parsed()
    if not keys.enabled:
        print("fleetgate: FLEETGATE_SIGNING_KEYS is empty", file=sys.stderr)
        return 1
    print(",".join(public_entry(k) for k in keys.by_signer.values()))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's sub-commands to the `fleetgate` parser."""
    keys = sub.add_parser("keys", help="Ed25519 decision-signing keys (docs/security.md)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = ksub.add_parser("generate", help="a new key pair for the gate or an operator")
    p.add_argument("--signer", required=True, help="'gate' or 'operator:NAME' (NAME as given to --by)")
    p.add_argument("--key-id", required=True, help="a new id per key, e.g. gate-2026-12 (rotation)")
    p.add_argument("--dir", help="write KEY_ID.key (mode 600) and KEY_ID.pub there instead of printing")
    p.add_argument(
        "--keep",
        action="store_true",
        help="with --dir: leave an existing KEY_ID pair as it is (idempotent set-up)",
    )
    p.set_defaults(handler=_cmd_generate)
    p = ksub.add_parser("public", help="the FLEETGATE_VERIFY_KEYS entries of FLEETGATE_SIGNING_KEYS")
    p.set_defaults(handler=_cmd_public)
