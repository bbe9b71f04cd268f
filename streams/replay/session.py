"""Glue for the commands: where a capture comes from, which policy, which inventory."""

from __future__ import annotations

import time
from pathlib import Path

from gates.events import DeviceAttributes
from gates.policy import GatePolicy, load_policy
from streams.codecs import Decoder
from streams.config import ConfigError, Settings
from streams.replay.capture import INPUT_TOPICS, Capture
from streams.replay.errors import ReplayError
from streams.replay.export import read_export
from streams.replay.inventory import lookup_inventory
from streams.replay.kafka import read_capture
from streams.replay.replayer import Timeline, replay
from streams.replay.timerange import TimeRange
from streams.resources import policy_bytes

__all__ = ["device_ids", "live_policy", "load_capture", "other_policy", "run"]


def live_policy(settings: Settings) -> GatePolicy:
    """The worker's policy: FLEETGATE_POLICY or the built-in default (and its window override)."""
    from streams.worker.runner import load_worker_policy

    try:
        return load_worker_policy(settings, settings.window_ms or None)
    except ConfigError as exc:
        raise ReplayError(str(exc)) from None


def other_policy(path: str) -> GatePolicy:
    try:
        return load_policy(policy_bytes(path))
    except FileNotFoundError as exc:
        raise ReplayError(f"--policy {exc}") from None
    except OSError as exc:
        raise ReplayError(f"--policy {path}: {exc.strerror}") from None
    except ValueError as exc:  # PolicyError names the bad key
        raise ReplayError(f"--policy {path}: {exc}") from None


def load_capture(
    settings: Settings,
    trange: TimeRange | None,
    file: str | None,
    *,
    control: bool = True,
    lazy: bool = False,
) -> Capture:
    """From the export ``file``, else from the broker; ``lazy``: input partitions are consumed
    where they are decoded (a parallel replay's workers), see ``kafka.KafkaRows``."""
    if file:
        return read_export(Path(file), trange)
    if trange is None:
        raise ReplayError("both --from and --to are required (or --file with an export)")
    cap = read_capture(settings, trange, with_control=control, lazy=lazy)
    if cap.input_count == 0:
        raise ReplayError(
            f"no records on {', '.join(settings.topic(t) for t in INPUT_TOPICS)} in {trange}: nothing to replay "
            "(check the range and FLEETGATE_TOPIC_PREFIX)"
        )
    return cap


def device_ids(capture: Capture) -> set[str]:
    out: set[str] = set()
    decoders = {"telemetry": Decoder.telemetry(), "acks": Decoder.ack(), "device-commands": Decoder.output()}
    for (topic, _), msgs in capture.inputs.items():
        records, _errs = decoders[topic].decode_batch(msgs)
        out.update(d for r in records if (d := getattr(r, "device_id", None)) is not None)
    return out


def run(
    settings: Settings, capture: Capture, policy: GatePolicy, rollout: str | None, *, health: bool = True
) -> Timeline:
    if capture.input_count == 0:
        raise ReplayError(f"no input records in {capture.trange} ({capture.source}): nothing to replay")

    def lookup(ids: set[str]) -> tuple[dict[str, DeviceAttributes], str]:
        # the inventory as it was when the range starts (attributes change rarely)
        return lookup_inventory(settings, ids, capture.trange.start_ms)

    return replay(capture, policy, rollout=rollout, lookup=lookup, collect_health=health)


def now_ms() -> int:
    return int(time.time() * 1000)
