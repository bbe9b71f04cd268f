"""`fleetgate worker` and `fleetgate status`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from streams.config import Settings

__all__ = ["register"]


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.logs import configure_logging
    from streams.worker.runner import run_worker

    configure_logging(args.log_level)
    return run_worker(
        settings,
        role=args.role,
        instance=args.instance,
        idle_timeout_s=args.idle_timeout,
        commit_interval_s=args.commit_interval,
        window_ms=args.window_ms or settings.window_ms or None,
    )


def _status(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from streams.worker.app import status_key

    client = redis.Redis.from_url(settings.redis_url.value, decode_responses=True)
    status = client.hgetall(status_key(settings, args.rollout))
    if not status:
        print(f"no status for rollout {args.rollout!r} yet (is a worker running?)")
        return 1
    for key in ("reasons", "health", "latest"):
        if key in status:
            status[key] = json.loads(status[key])
    print(json.dumps(status, indent=2, sort_keys=True))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run the live pipeline (ingest + decider)")
    w.add_argument("--role", choices=("all", "ingest", "decide"), default="all", help="which stage(s) to run")
    w.add_argument("--instance", default="0", help="unique per worker process (transactional id, data dir)")
    w.add_argument(
        "--idle-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds before an idle partition stops holding the watermark",
    )
    w.add_argument(
        "--commit-interval", type=_positive(float), default=0.25, help="seconds between ingest transactions"
    )
    w.add_argument("--window-ms", type=_positive(int), default=None, help="override the policy's window size")
    w.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    w.set_defaults(handler=_worker)

    s = sub.add_parser("status", help="latest gate status of a rollout (from Redis)")
    s.add_argument("rollout", help="rollout id")
    s.set_defaults(handler=_status)
