"""`fleetgate alerts`: run the alert forwarder until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import replace

from streams.config import Settings

__all__ = ["register"]


def _duration_ms(text: str) -> int:
    from streams.executor.commands import _duration_ms as parse

    return parse(text)


def _urls(raw: str | None) -> list[str]:
    return [u.strip() for u in (raw or "").split(",") if u.strip()]


def _cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from streams.alerts.forwarder import AlertForwarder, AlertOptions
    from streams.security.preflight import check_kafka
    from streams.security.verify import check_verify_config

    am = args.alertmanager or _urls(os.environ.get("FLEETGATE_ALERTMANAGER_URL"))
    hooks = args.webhook or _urls(os.environ.get("FLEETGATE_ALERT_WEBHOOK_URL"))
    try:
        options = AlertOptions(
            alertmanager_urls=tuple(am),
            webhook_urls=tuple(hooks),
            ttl_ms=args.ttl,
            resend_ms=args.resend,
            group=args.group or "",
        )
        options.targets()  # validates the URLs before anything connects
    except ValueError as exc:
        print(f"fleetgate alerts: {exc}", file=sys.stderr)
        return 2
    settings = replace(settings, insecure_accept_unsigned=args.insecure_accept_unsigned)
    check_verify_config(settings)  # exit 2 at once: no public keys and no insecure flag
    check_kafka(settings)  # exit 2 at once on bad Kafka credentials / TLS
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("fleetgate.alerts")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    forwarder = AlertForwarder(settings, options, instance=args.instance)
    forwarder.metrics.serve(args.metrics_port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: forwarder.stop.set())
    forwarder.run()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `fleetgate alerts` to the `fleetgate` parser."""
    p = sub.add_parser(
        "alerts",
        help="forward PAUSE / ROLLBACK decisions to Alertmanager and webhooks (until SIGINT/SIGTERM)",
        description="Consumes the control topic (group {group_id}-alerts) and posts an alert per gate or "
        "operator PAUSE / ROLLBACK; a PROCEED or resume of the stage resolves it. Offsets are committed "
        "only after delivery; a target that is down is retried with backoff.",
    )
    p.add_argument(
        "--alertmanager",
        action="append",
        metavar="URL",
        help="Alertmanager base URL, e.g. http://127.0.0.1:9093 (repeat for each cluster member; "
        "env FLEETGATE_ALERTMANAGER_URL, comma-separated)",
    )
    p.add_argument(
        "--webhook",
        action="append",
        metavar="URL",
        help="generic JSON webhook, one POST per alert (repeatable; env FLEETGATE_ALERT_WEBHOOK_URL)",
    )
    p.add_argument(
        "--ttl",
        type=_duration_ms,
        default=24 * 3_600_000,
        help="an alert no PROCEED resolves fires this long (default 24h)",
    )
    p.add_argument(
        "--resend",
        type=_duration_ms,
        default=60_000,
        help="re-send open alerts this often: Alertmanager keeps none across a restart (default 60s)",
    )
    p.add_argument("--group", help="consumer group (default {FLEETGATE_GROUP_ID}-alerts)")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (default off)"
    )
    p.add_argument(
        "--insecure-accept-unsigned",
        action="store_true",
        help="development only: also alert on decisions that carry no signature",
    )
    p.add_argument("--instance", default="0", help="unique per process: its static group membership")
    p.set_defaults(handler=_cmd_alerts)
