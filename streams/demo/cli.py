"""`python -m streams.demo` / `fleetgate demo`: watch, summary, cleanup (used by scripts/demo.sh)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from streams.config import Settings

__all__ = ["add_arguments", "main", "run"]


def _alive(pid_dir: Path | None) -> str | None:
    """A message when a process with a pid file in ``pid_dir`` has exited."""
    if pid_dir is None:
        return None
    for f in sorted(pid_dir.glob("*.pid")):
        try:
            pid = int(f.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return f"{f.stem} (pid file {f}) is not running; see its log next to the pid file"
        except PermissionError:
            continue
    return None


def _cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from streams.demo.watch import watch

    console = Console()
    state, decisions = watch(
        settings,
        args.rollout,
        title=args.title,
        timeout_s=args.timeout,
        console=console,
        alive=lambda: _alive(args.pid_dir),
    )
    console.print(f"[bold]rollout {args.rollout}: {state}[/] ({len(decisions)} decisions)")
    return 0 if state in ("COMPLETED", "ROLLED_BACK", "PAUSED") else 1


def _cmd_summary(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from streams.demo.outcome import check_outcome, load_truth
    from streams.demo.watch import DecisionReader, render_summary, signed_by
    from streams.executor.store import ExecutorStore

    console = Console()
    reader = DecisionReader(settings)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        reader.poll(0.5)
    reader.close()
    store = ExecutorStore.from_url(settings.redis_url.value, settings.redis_namespace)
    truth = load_truth(Path(args.truth))
    outcome = check_outcome(store, args.rollout, truth, reader.decisions, max_windows=args.max_windows)
    extra = {}
    if args.wall_start:
        extra["wall time"] = f"{time.time() - args.wall_start:.1f} s"
    keys = settings.verify_keys_parsed()
    mine = [d for d in reader.decisions if d.rollout_id == args.rollout]
    if keys.enabled:
        verified = sum(not signed_by(d, keys).startswith("NOT") for d in mine)
        extra["signatures"] = f"{verified} of {len(mine)} decisions verified with public keys only"
    render_summary(console, args.rollout, reader.decisions, outcome, extra, keys if keys.enabled else None)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(outcome.to_dict(), indent=1) + "\n", encoding="utf-8")
    return 0 if outcome.ok else 1


def _cmd_cleanup(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a finished run's topics (by prefix) and Redis keys (by namespace)."""
    import redis
    from confluent_kafka.admin import AdminClient

    if not args.prefix.startswith("demo.") or not args.namespace.startswith("demo-"):
        print("cleanup only removes demo runs (prefix demo.*, namespace demo-*)", file=sys.stderr)
        return 2
    admin = AdminClient(settings.kafka_client_config())
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(args.prefix)]
    if topics:
        for f in admin.delete_topics(topics, operation_timeout=30).values():
            try:
                f.result(timeout=30)
            except Exception as exc:  # noqa: BLE001 - best effort, reported
                print(f"topic not deleted: {exc}", file=sys.stderr)
    client = redis.Redis.from_url(settings.redis_url.value)
    keys = list(client.scan_iter(f"{args.namespace}:*", count=2000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
    print(f"removed {len(topics)} topics ({args.prefix}*) and {len(keys)} Redis keys ({args.namespace}:*)")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="demo_command", required=True)
    w = sub.add_parser("watch", help="live view of a rollout until it completes, rolls back or pauses")
    w.add_argument("rollout")
    w.add_argument("--timeout", type=float, default=150.0, help="seconds (exit 1 when reached)")
    w.add_argument("--pid-dir", type=Path, help="stop early when a process with a pid file here died")
    w.add_argument("--title", default="fleetgate demo")
    w.set_defaults(handler=_cmd_watch)
    s = sub.add_parser("summary", help="decisions with reasons and the outcome check against the truth")
    s.add_argument("rollout")
    s.add_argument("--truth", required=True, help="the simulator's --truth-out file")
    s.add_argument("--max-windows", type=int, default=None, help="gate windows allowed from dispatch to stop")
    s.add_argument("--json-out", help="also write the outcome as JSON")
    s.add_argument("--wall-start", type=float, default=0.0, help="epoch seconds the run started")
    s.set_defaults(handler=_cmd_summary)
    c = sub.add_parser("cleanup", help="delete a demo run's topics and Redis keys")
    c.add_argument("--prefix", required=True, help="topic prefix of the run (demo.<run>.)")
    c.add_argument("--namespace", required=True, help="Redis namespace of the run (demo-<run>)")
    c.set_defaults(handler=_cmd_cleanup)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return int(args.handler(args, settings))


def main(argv: list[str] | None = None) -> int:
    from streams.config import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m streams.demo", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"fleetgate demo: {exc}", file=sys.stderr)
        return 2
    return run(args, settings)
