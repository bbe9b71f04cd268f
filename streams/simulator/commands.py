"""`fleetgate simulate` sub-commands."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from streams.config import ConfigError, Settings
from streams.simulator.profiles import PROFILE_NAMES, PROFILE_SETS
from streams.simulator.scenarios import SCENARIOS

__all__ = ["register"]


def _interval(text: str) -> tuple[str, int]:
    name, sep, seconds = text.partition("=")
    if not sep or name not in PROFILE_NAMES:
        raise argparse.ArgumentTypeError(
            f"expected PROFILE=SECONDS with PROFILE one of {', '.join(PROFILE_NAMES)}"
        )
    try:
        ms = round(float(seconds) * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{seconds!r} is not a number of seconds") from None
    if ms < 100:
        raise argparse.ArgumentTypeError("an interval must be at least 0.1 s")
    return name, ms


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "simulate_command", None) == "inventory":
        return _cmd_inventory(args, settings)
    from streams.logs import configure_logging
    from streams.simulator.runner import SimulatorConfig, run_simulator

    configure_logging(args.log_level)
    config = SimulatorConfig(
        devices=args.devices,
        scenario=args.scenario,
        seed=args.seed,
        profile_set=args.profiles,
        intervals_ms=dict(args.interval or []),
        duration_s=args.duration,
        fast=args.fast,
        start_ms=args.start_ms,
        rate_limit=args.rate_limit,
        framing=args.framing,
        inventory_out=args.inventory_out,
        truth_out=args.truth_out,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stats = run_simulator(settings, config, stop)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from exc
    print(f"simulated {stats.telemetry} telemetry reports and {sum(stats.acks.values())} acks {stats.acks}")
    return 0


def _cmd_inventory(args: argparse.Namespace, settings: Settings) -> int:
    from streams.simulator.fleet import generate_fleet
    from streams.simulator.scenarios import scenario

    rows = generate_fleet(args.devices, args.seed, scenario(args.scenario).generations).write_csv(args.output)
    print(f"wrote {rows} devices to {args.output}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `fleetgate simulate` (and `fleetgate simulate inventory`) to the parser."""
    p = sub.add_parser(
        "simulate",
        help="run the fleet simulator (devices emit telemetry and obey commands)",
        description="Simulated devices produce telemetry and acks and obey update/rollback commands "
        "from the device-commands topic.  See docs/simulator.md.",
    )
    p.add_argument("--devices", type=_positive, default=100, help="fleet size (default 100)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="healthy", help="what goes wrong")
    p.add_argument("--seed", type=int, default=0, help="seed: same seed, same fleet and events")
    p.add_argument(
        "--duration", type=float, help="seconds to run (fast mode: synthetic seconds, default 600)"
    )
    p.add_argument("--fast", action="store_true", help="synthetic time, as fast as possible (no commands)")
    p.add_argument("--start-ms", type=int, help="fast mode: first event time (default: now)")
    p.add_argument("--rate-limit", type=float, metavar="EPS", help="at most this many events per second")
    p.add_argument("--profiles", choices=sorted(PROFILE_SETS), default="demo", help="report intervals set")
    p.add_argument(
        "--interval",
        type=_interval,
        action="append",
        metavar="PROFILE=SECONDS",
        help="override one profile's report interval (repeatable)",
    )
    p.add_argument("--framing", choices=("single-object", "confluent"), default="single-object")
    p.add_argument("--inventory-out", type=Path, help="write the fleet inventory CSV here")
    p.add_argument("--truth-out", type=Path, help="write the ground truth JSON here")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=_cmd_simulate)
    ssub = p.add_subparsers(dest="simulate_command")
    inv = ssub.add_parser("inventory", help="only write the fleet inventory CSV")
    inv.add_argument("--devices", type=_positive, default=100)
    inv.add_argument("--seed", type=int, default=0)
    inv.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="healthy",
        help="its fleet (format-switch: more legacy)",
    )
    inv.add_argument("-o", "--output", type=Path, required=True, help="CSV file to write")
    inv.set_defaults(handler=_cmd_inventory)
