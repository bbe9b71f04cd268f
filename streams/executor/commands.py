"""`fleetgate` sub-commands of the executor: inventory, executor, fleet versions, rollout."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from streams.config import Settings

__all__ = ["register"]

EXIT_SKIPPED = 1  # `inventory load`: good rows loaded, some bad rows skipped
_UNSIGNED_HELP = (
    "DEVELOPMENT ONLY: publish unsigned when FLEETGATE_SIGNING_KEYS has no key for operator:<--by> "
    "(executors refuse it unless started with --insecure-accept-unsigned)"
)
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)?$")


def _duration_ms(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 500ms, 30s, 10m or 1h")
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}[m.group(2)]


def _text(limit: int) -> Any:
    def parse(v: str) -> str:
        v = v.strip()
        if not v or len(v) > limit:
            raise argparse.ArgumentTypeError(f"expected 1..{limit} characters")
        return v

    return parse


def _store(settings: Settings) -> Any:
    from streams.executor.store import ExecutorStore

    return ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)


def _err(msg: str) -> int:
    print(f"fleetgate: {msg}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------- inventory
def _cmd_inventory_load(args: argparse.Namespace, settings: Settings) -> int:
    import redis
    from confluent_kafka import KafkaException

    from streams.inventory import load_inventory_csv
    from streams.inventory_topic import InventoryTopic, InventoryTopicError
    from streams.topics import TOPICS, create_topics

    path = Path(args.file)
    if not path.is_file():
        return _err(f"{path}: no such file")
    client = redis.Redis.from_url(settings.redis_url.value)
    record = InventoryTopic(settings)  # the record; Redis is its cache
    try:
        create_topics(settings, [s for s in TOPICS if s.name == "inventory"])  # idempotent
        report = load_inventory_csv(
            client, settings.redis_namespace, path, record=record, as_of_ms=args.as_of
        )
    except (ValueError, UnicodeDecodeError, InventoryTopicError, KafkaException) as exc:
        return _err(f"inventory not loaded: {exc}")
    finally:
        record.close()
    for line, reason in report.skipped:
        print(f"{path}:{line}: skipped: {reason}", file=sys.stderr)
    print(report.summary())
    return EXIT_SKIPPED if report.skipped and not args.allow_skipped else 0


def _cmd_inventory_show(args: argparse.Namespace, settings: Settings) -> int:
    from streams.inventory import device_key

    store = _store(settings)
    raw = store.client.hgetall(device_key(settings.redis_namespace, args.device))
    if not raw:
        return _err(
            f"device {args.device!r} is not in the inventory (namespace {settings.redis_namespace!r})"
        )
    out: dict[str, Any] = {"inventory": {k.decode(): v.decode() for k, v in sorted(raw.items())}}
    if "history" in out["inventory"]:  # the attribute versions (JSON), shown as data
        out["inventory"]["history"] = json.loads(out["inventory"]["history"])
    out["versions"] = store.read_versions([args.device]).get(args.device, {})
    print(json.dumps(out, indent=2))
    return 0


# ----------------------------------------------------------------- executor
def _cmd_executor(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from streams.executor.runner import Executor
    from streams.security.preflight import check_kafka
    from streams.security.verify import check_verify_config

    settings = replace(settings, insecure_accept_unsigned=args.insecure_accept_unsigned)
    check_verify_config(settings)  # exit 2 at once: no public keys and no insecure flag
    check_kafka(settings)  # exit 2 at once on bad Kafka credentials / TLS
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("fleetgate.executor")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if settings.signing_keys.value:
        # It never signs: a private key here only widens what a break-in would yield.
        logger.warning(
            json.dumps(
                {
                    "event": "private_keys_on_executor",
                    "detail": "FLEETGATE_SIGNING_KEYS is set but the executor only verifies: remove it "
                    "from the executor's environment (docs/security.md)",
                }
            )
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    Executor(settings, offline_after_ms=args.offline_after, instance=args.instance).run(stop)
    return 0


# -------------------------------------------------------------------- fleet
def _cmd_fleet_versions(args: argparse.Namespace, settings: Settings) -> int:
    from streams.executor.errors import UnknownRollout
    from streams.executor.report import fleet_versions, rollout_versions

    store = _store(settings)
    try:
        rows = rollout_versions(store, args.rollout) if args.rollout else fleet_versions(store)
    except UnknownRollout as exc:
        return _err(str(exc))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table(rows)
    return 0


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(no devices)")
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, 0)).ljust(width[c]) for c in cols))


# ------------------------------------------------------------------ rollout
def _cmd_rollout_start(args: argparse.Namespace, settings: Settings) -> int:
    from streams.executor.errors import ExecutorError
    from streams.executor.operator import start
    from streams.executor.plans import load_plan
    from streams.security.preflight import check_kafka

    try:
        spec = load_plan(args.plan)
        check_kafka(settings)  # before anything is stored: a retry must not find a half-started rollout
        d = start(settings, spec, args.by, args.reason, allow_unsigned=args.insecure_unsigned)
    except ExecutorError as exc:
        return _err(str(exc))
    print(
        json.dumps(
            {"decision_id": d.decision_id, "rollout_id": d.rollout_id, "note": d.note, "operator": d.operator}
        )
    )
    return 0


def _cmd_rollout_request(args: argparse.Namespace, settings: Settings) -> int:
    from streams.executor.errors import ExecutorError
    from streams.executor.operator import request
    from streams.security.preflight import check_kafka

    check_kafka(settings)  # exit 2 at once on bad Kafka credentials / TLS
    try:
        d = request(
            settings,
            args.rollout_command,
            args.rollout_id,
            args.by,
            args.reason,
            stage=args.stage,
            allow_unsigned=args.insecure_unsigned,
        )
    except ExecutorError as exc:
        return _err(str(exc))
    print(json.dumps({"decision_id": d.decision_id, "rollout_id": d.rollout_id, "stage": d.stage,
                      "action": d.action.value, "note": d.note, "operator": d.operator}))  # fmt: skip
    return 0


def _cmd_rollout_status(args: argparse.Namespace, settings: Settings) -> int:
    from streams.executor.errors import UnknownRollout
    from streams.executor.report import rollout_status

    try:
        print(json.dumps(rollout_status(_store(settings), args.rollout_id), indent=2))
    except UnknownRollout as exc:
        return _err(str(exc))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's sub-commands to the `fleetgate` parser."""
    inv = sub.add_parser("inventory", help="fleet inventory (topic fleet.inventory, cached in Redis)")
    isub = inv.add_subparsers(dest="inventory_command", required=True)
    p = isub.add_parser(
        "load",
        help="load a CSV inventory; bad rows are reported with line numbers and skipped",
        description=f"Exit codes: 0 all rows loaded; {EXIT_SKIPPED} good rows loaded but some skipped "
        "(0 with --allow-skipped); 1 also when the file or its header is unusable (nothing loaded).",
    )
    p.add_argument("file", help="CSV with a header naming device_id and attribute columns")
    p.add_argument("--allow-skipped", action="store_true", help="exit 0 even when bad rows were skipped")
    p.add_argument(
        "--as-of",
        type=int,
        default=None,
        metavar="MS",
        help="the rows' attributes hold from this time (ms since the epoch; default: now)",
    )
    p.set_defaults(handler=_cmd_inventory_load)
    p = isub.add_parser("show", help="one device's inventory attributes and version-map entry")
    p.add_argument("device", type=_text(128))
    p.set_defaults(handler=_cmd_inventory_show)

    p = sub.add_parser("executor", help="run the reference rollout executor (until SIGINT/SIGTERM)")
    p.add_argument(
        "--offline-after",
        type=_duration_ms,
        default=10 * 60_000,
        help="a device silent this long gets its rollback queued until it reconnects (default 10m)",
    )
    p.add_argument(
        "--instance",
        default="0",
        help="unique per executor process: its static group membership (a restart resumes at once)",
    )
    p.add_argument(
        "--insecure-accept-unsigned",
        action="store_true",
        help="DEVELOPMENT ONLY: obey decisions that carry no signature (signed ones are still checked)",
    )
    p.set_defaults(handler=_cmd_executor)

    fleet = sub.add_parser("fleet", help="fleet-wide views")
    fsub = fleet.add_subparsers(dest="fleet_command", required=True)
    p = fsub.add_parser(
        "versions", help="desired / reported / acknowledged versions (per stage with --rollout)"
    )
    p.add_argument("--rollout", type=_text(128), help="break down by the stages of this rollout")
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.set_defaults(handler=_cmd_fleet_versions)

    ro = sub.add_parser("rollout", help="operator commands (written to the control topic as decisions)")
    rsub = ro.add_subparsers(dest="rollout_command", required=True)
    p = rsub.add_parser("start", help="store a plan and write the start decision")
    p.add_argument("plan", help="plan YAML file (see plans/)")
    p.add_argument("--by", type=_text(64), default=getpass.getuser(), help="who (default: login name)")
    p.add_argument("--reason", type=_text(500), default="planned rollout", help="why")
    p.add_argument("--insecure-unsigned", action="store_true", help=_UNSIGNED_HELP)
    p.set_defaults(handler=_cmd_rollout_start)
    for verb, what in (("pause", "stop dispatching, keep state"), ("resume", "resume a paused rollout"),
                       ("rollback", "roll back every stage up to the current one")):  # fmt: skip
        p = rsub.add_parser(verb, help=what)
        p.add_argument("rollout_id", type=_text(128))
        p.add_argument("--by", type=_text(64), required=True, help="who")
        p.add_argument("--reason", type=_text(500), required=True, help="why")
        p.add_argument("--stage", type=int, help="stage index (default: the rollout's current stage)")
        p.add_argument("--insecure-unsigned", action="store_true", help=_UNSIGNED_HELP)
        p.set_defaults(handler=_cmd_rollout_request)
    p = rsub.add_parser("status", help="executor state of a rollout and the gate's latest status")
    p.add_argument("rollout_id", type=_text(128))
    p.set_defaults(handler=_cmd_rollout_status)
