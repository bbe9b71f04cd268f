"""`fleetgate replay`, `fleetgate export` and `fleetgate report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streams.config import Settings
from streams.replay.errors import ReplayError

if TYPE_CHECKING:
    from gates.events import DeviceAttributes
    from streams.replay.capture import Capture

__all__ = ["register"]

EXIT_DIFFERENT = 1  # replay done, but it differs from live
EXIT_ERROR = 2  # bad arguments, empty range, unreadable input


def _err(msg: str) -> int:
    print(f"fleetgate: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _range(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from streams.replay.timerange import TimeRange

    if args.start is None and args.end is None and getattr(args, "file", None):
        return None
    return TimeRange.parse(args.start, args.end)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _replay_inner(args, settings)
    except ReplayError as exc:
        return _err(str(exc))


def _replay_inner(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay.compare import compare, live_decisions, what_if
    from streams.replay.session import live_policy, load_capture, other_policy, run
    from streams.replay.timeline import write_timeline
    from streams.replay.timerange import format_ms

    trange = _range(args)
    base = live_policy(settings)
    policy = other_policy(args.policy) if args.policy else base
    cap = load_capture(settings, trange, args.file, control=args.compare, lazy=True)
    tl = run(settings, cap, policy, args.rollout, health=False)
    for note in tl.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"replayed {tl.events} events ({tl.devices} devices) from {cap.source} {cap.trange} "
        f"under policy {policy.version}: {len(tl.decisions)} decisions, "
        f"watermark {format_ms(tl.watermark_ms) if tl.watermark_ms > 0 else '-'}"
    )
    if args.output:
        if args.output == "-":
            write_timeline(sys.stdout, tl.decisions)
        else:
            with Path(args.output).open("w", encoding="utf-8") as fo:
                write_timeline(fo, tl.decisions)
            print(f"timeline: {args.output}")
    else:
        for d in tl.decisions:
            print(
                f"  {format_ms(d.window_end_ms)}  {d.rollout_id} stage {d.stage}  {d.action.value:8} {d.decision_id}"
            )
    if not args.compare:
        return 0
    live, ops, bad = live_decisions(cap.control, args.rollout)
    if bad:
        print(f"note: {bad} undecodable records on rollout-control skipped", file=sys.stderr)
    for op in ops:
        print(
            f"  operator {format_ms(op.window_end_ms)} {op.rollout_id} stage {op.stage} {op.action.value} "
            f"by {op.operator or '?'}: {op.note or ''}"
        )
    if args.policy:
        reference, label = live, "live"
        if not live:
            reference = run(settings, cap, base, args.rollout, health=False).decisions
            label = f"replay under {base.version} (no live decisions found)"
        print(f"what-if: {policy.version} versus {label}")
        rows = what_if(reference, tl.decisions)
        for row in rows:
            print("  " + row.line(policy.version))
        if not rows:
            print("  neither fired PROCEED, PAUSE or ROLLBACK")
        return 0
    diff = compare(live, tl.decisions, tl.watermark_ms, cap.trange.start_ms)
    print(
        f"compare with live: {len(diff.matched)} identical, {len(diff.missing)} missing, "
        f"{len(diff.extra)} extra, {len(diff.changed)} with a different action, "
        f"{len(diff.shifted)} in another window"
    )
    for line in diff.lines():
        print("  " + line)
    return 0 if diff.identical else EXIT_DIFFERENT


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay.export import write_export
    from streams.replay.inventory import lookup_inventory
    from streams.replay.session import device_ids, load_capture

    try:
        if args.format == "parquet":
            from streams.replay.parquet import require_pyarrow

            require_pyarrow()  # before reading a range that cannot be written
        elif args.file:
            raise ReplayError("--file converts an export to --format parquet; it is an Avro export already")
        trange = _range(args)
        cap = load_capture(settings, trange, args.file)
        if cap.inventory is not None:  # an export file carries its devices
            attrs = cap.inventory
        else:
            attrs, note = lookup_inventory(settings, device_ids(cap), cap.trange.start_ms)
            if note:
                print(f"note: {note}", file=sys.stderr)
        if args.format == "parquet":
            return _export_parquet(args.output, cap, attrs)
        n = write_export(Path(args.output), cap, attrs, codec=args.codec)
    except ReplayError as exc:
        return _err(str(exc))
    print(
        f"exported {n} records ({cap.input_count} input, {len(cap.plans)} plans, {len(cap.control)} "
        f"decisions) and {len(attrs)} devices of {cap.trange} to {args.output}"
    )
    return 0


def _export_parquet(output: str, cap: Capture, attrs: dict[str, DeviceAttributes]) -> int:
    from streams.replay.parquet import write_events

    counts = write_events(Path(output), cap, attrs)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    print(f"exported {sum(counts.values())} decoded events ({kinds or 'none'}) of {cap.trange} to {output}")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay.report import build_report

    try:
        out = build_report(
            settings, args.rollout, Path(args.output), args.start, args.end, args.file, args.policy
        )
    except ReplayError as exc:
        return _err(str(exc))
    print(f"report: {out}")
    return 0


def _time_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--from",
        dest="start",
        metavar="T1",
        required=required,
        help="range start: ISO-8601 UTC (2024-05-01T12:00:00Z) or epoch ms",
    )
    p.add_argument("--to", dest="end", metavar="T2", required=required, help="range end (exclusive)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this package's sub-commands to the `fleetgate` parser."""
    r = sub.add_parser("replay", help="replay a time range through the gate engine; compare with live")
    _time_args(r, False)
    r.add_argument("--file", help="replay an export file instead of the broker (no Kafka needed)")
    r.add_argument("--rollout", help="only this rollout")
    r.add_argument(
        "--policy",
        help="what-if: replay under this policy (YAML file or shipped name) and show when it would have fired",
    )
    r.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare with the decisions on rollout-control (default on)",
    )
    r.add_argument("-o", "--output", help="write the decision timeline as JSON lines ('-' for stdout)")
    r.set_defaults(handler=_replay)

    e = sub.add_parser(
        "export", help="export a time range of the topics: Avro for offline replay, or Parquet for notebooks"
    )
    _time_args(e, False)
    e.add_argument("-o", "--output", required=True, help="the .avro (or .parquet) file to write")
    e.add_argument(
        "--format",
        default="avro",
        choices=("avro", "parquet"),
        help="avro: the raw records, for `replay --file`; parquet: the decoded canonical events (pyarrow)",
    )
    e.add_argument(
        "--file", help="with --format parquet: convert this export file instead of reading the broker"
    )
    e.add_argument("--codec", default="deflate", choices=("null", "deflate"), help="Avro block codec")
    e.set_defaults(handler=_export)

    p = sub.add_parser("report", help="self-contained HTML incident report of a rollout (+ CSV and Parquet)")
    p.add_argument("rollout", help="rollout id")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="directory to write index.html, metrics.csv, metrics.parquet and decisions.parquet to",
    )
    _time_args(p, False)
    p.add_argument("--file", help="build it from an export file instead of the broker")
    p.add_argument(
        "--policy", help="replay under this policy (YAML file or shipped name) instead of the worker's"
    )
    p.set_defaults(handler=_report)
