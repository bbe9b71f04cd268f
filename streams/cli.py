"""`fleetgate` command line: one sub-command per job, arguments validated with clear messages."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from streams.config import ConfigError, Settings, load_settings

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], int]


def _cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from streams.topics import create_topics

    for name, state in sorted(create_topics(settings).items()):
        print(f"{state:8} {name}")
    return 0


def _cmd_topics_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.topics import TOPICS

    for spec in TOPICS:
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 86_400_000}d"
        print(
            f"{settings.topic(spec.name):28} {spec.partitions:3}p {spec.cleanup_policy:8} {retention:8} {spec.purpose}"
        )
    return 0


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    shown = {k: repr(v) if k in ("sasl_password", "redis_url") else v for k, v in vars(settings).items()}
    # key ids and signers only, never key material (not even the public keys)
    shown["signing_keys"] = repr(settings.signing_keys_parsed())
    shown["verify_keys"] = repr(settings.verify_keys_parsed())
    print(json.dumps(shown, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetgate", description="Real-time health gate for staged IoT rollouts"
    )
    parser.add_argument(
        "--bootstrap-servers", help="Kafka bootstrap servers (env FLEETGATE_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument(
        "--topic-prefix", help="topic name prefix (env FLEETGATE_TOPIC_PREFIX, default 'fleet.')"
    )
    parser.add_argument("--redis-url", help="Redis URL (env FLEETGATE_REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="manage the Kafka topics fleetgate uses")
    tsub = topics.add_subparsers(dest="topics_command", required=True)
    tsub.add_parser("create", help="create every topic (idempotent)").set_defaults(handler=_cmd_topics_create)
    tsub.add_parser("list", help="show topic names and settings").set_defaults(handler=_cmd_topics_list)

    sub.add_parser("config", help="print the effective configuration (secrets masked)").set_defaults(
        handler=_cmd_config
    )
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


# Sub-commands living next to the code they run; each module has `register(subparsers)`.
# Handlers have the signature `(args, settings) -> exit code`.
_COMMAND_MODULES = (
    "streams.worker.commands",
    "streams.executor.commands",
    "streams.simulator.commands",
    "streams.replay.commands",
    "streams.demo.commands",
    "streams.alerts.commands",
    "streams.security.commands",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            bootstrap_servers=args.bootstrap_servers, topic_prefix=args.topic_prefix, redis_url=args.redis_url
        )
    except ConfigError as exc:
        print(f"fleetgate: configuration error: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ConfigError as exc:
        print(f"fleetgate: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
