"""Benchmark: replay throughput from an export file and from the broker, next to a plain consume loop.

    python bench/replay.py [--devices 2000] [--seconds 300] [--no-kafka]

The scenario is tests/pipeline/fleet.py scaled up (telemetry every 2 s per device in all three
payload generations, an update with acks for half the fleet, one rollout).  Targets: a file
replay >= 300,000 events/s; a broker replay >= 0.5 x a plain confluent-kafka consume loop over
the same range (also printed: the ratio to that loop with decoding).  Both replays include
decoding; the figures for reading, decoding alone and the engine alone on the same events show
where the time of the sequential replays goes (consume or read, decode, fold, and the rest:
merge, sort, partials).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gates.engine import Engine  # noqa: E402
from gates.policy import load_policy  # noqa: E402
from streams.codecs import Encoder, Framing  # noqa: E402
from streams.replay.capture import Capture  # noqa: E402
from streams.replay.export import read_export, write_export  # noqa: E402
from streams.replay.parallel import default_workers  # noqa: E402
from streams.replay.replayer import _decoders, replay  # noqa: E402
from streams.replay.timerange import TimeRange  # noqa: E402
from tests.pipeline import fleet  # noqa: E402

FILE_TARGET = 300_000
BROKER_RATIO_TARGET = 0.5
PARTITIONS = 12


def scenario(devices: int, seconds: int) -> tuple[list[tuple[str, Any, int]], int]:
    t0 = 1_790_000_000_000
    return fleet.events(fleet.Fleet.make(devices), t0, bad_model="cam-c1", seconds=seconds), t0


def encode(items: list[tuple[str, Any, int]], prefix: str) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
    """Raw tuples per (topic, partition), formats rotating like tests/pipeline/fleet.produce."""
    enc = Encoder()
    out: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for n, (topic, rec, ts) in enumerate(items):
        value, headers = fleet.encode_mixed(enc, rec, n % 3)
        key = rec.device_id.encode()
        p = zlib.crc32(key) % PARTITIONS
        lst = out.setdefault((topic, p), [])
        lst.append((value, headers, ts, prefix + topic, p, len(lst), key))
    return out


def plan_raw(t0: int, prefix: str) -> tuple[Any, ...]:
    value, headers = Encoder().encode(fleet.plan(t0 - 1000), Framing.SINGLE_OBJECT)
    return (value, headers, t0 - 1000, prefix + "rollouts", 0, 0, fleet.ROLLOUT.encode())


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def bench_file(devices: int, seconds: int, repeat: int) -> dict[str, float]:
    policy = load_policy(fleet.POLICY_YAML)
    items, t0 = scenario(devices, seconds)
    prefix = "bench."
    cap = Capture(prefix, TimeRange(t0 - 10_000, t0 + seconds * 1000 + 1), source="memory")
    cap.inputs = encode(items, prefix)
    cap.plans = [plan_raw(t0, prefix)]
    inventory = {d.device_id: d for d in fleet.Fleet.make(devices).devices}
    n = cap.input_count
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.avro"
        write_export(path, cap, inventory)
        size = path.stat().st_size
        t_read, loaded = best(lambda: read_export(path).input_count, repeat)
        t_total, tl = best(lambda: replay(read_export(path), policy, collect_health=False), repeat)
        t_seq, tl_seq = best(
            lambda: replay(read_export(path), policy, collect_health=False, workers=1), repeat
        )
        assert tl_seq.decisions == tl.decisions, "parallel and sequential replays differ"
        loaded = read_export(path)
        t_rows = best(lambda: sum(len(list(m)) for m in read_export(path).inputs.values()), repeat)[0]
    # where the time goes: decoding alone, the engine alone on the decoded events
    decoders = _decoders()

    def decode_all() -> list[Any]:
        out: list[Any] = []
        for (topic, _), msgs in sorted(loaded.inputs.items()):
            out.extend(decoders[topic].decode_batch(msgs)[0])
        return out

    t_decode, records = best(decode_all, repeat)
    records.sort(key=lambda r: getattr(r, "event_time_ms", None) or getattr(r, "issued_at_ms", 0))
    setup = [fleet.plan(t0 - 1000), *inventory.values()]

    def engine_only() -> int:
        eng = Engine(policy)
        eng.step(setup)
        return len(eng.step(records))

    t_engine, _ = best(engine_only, repeat)
    t_merge, _ = best(lambda: replay(loaded, policy, collect_health=False, workers=1), repeat)
    return {
        "events": n,
        "file_mb": size / 1e6,
        "decisions": len(tl.decisions),
        "workers": default_workers(),
        "file_eps": n / t_total,
        "file_seq_eps": n / t_seq,
        "read_eps": n / t_read,
        "rows_eps": n / t_rows,
        "decode_eps": n / t_decode,
        "engine_eps": n / t_engine,
        "replay_in_memory_eps": n / t_merge,
    }


def bench_broker(devices: int, seconds: int) -> dict[str, float]:
    from confluent_kafka import Producer

    from streams.config import load_settings
    from streams.replay.kafka import open_consumer, read_capture, read_range
    from streams.topics import TOPICS, create_topics

    policy = load_policy(fleet.POLICY_YAML)
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    settings = load_settings(os.environ | {"FLEETGATE_TOPIC_PREFIX": prefix})
    create_topics(
        settings, [t for t in TOPICS if t.name in ("telemetry", "acks", "device-commands", "rollouts")]
    )
    items, t0 = scenario(devices, seconds)
    raw = encode(items, prefix)
    producer = Producer(settings.kafka_client_config() | {"linger.ms": 20, "batch.num.messages": 10_000})
    for (_topic, p), msgs in raw.items():
        for value, headers, ts, full, _, _, key in msgs:
            producer.produce(full, value=value, key=key, headers=headers, timestamp=ts, partition=p)
            producer.poll(0)
    pv, ph, pts, _, _, _, pk = plan_raw(t0, prefix)
    producer.produce(settings.topic("rollouts"), value=pv, key=pk, headers=ph, timestamp=pts)
    assert producer.flush(60) == 0
    trange = TimeRange(t0 - 10_000, t0 + seconds * 1000 + 1)
    n = sum(len(v) for v in raw.values())
    topics = {
        settings.topic(t): (trange.start_ms, trange.end_ms) for t in ("telemetry", "acks", "device-commands")
    }

    def plain() -> int:  # assign every partition at its start offset, consume until each reaches its end
        c = open_consumer(settings)
        try:
            return sum(len(v) for v in read_range(c, topics).values())
        finally:
            c.close()

    plain()  # warm the broker's page cache and the client
    t_plain, got = best(plain, 2)
    assert got == n, (got, n)
    decoders = _decoders()

    def plain_decode() -> int:  # the same consume loop, then batch decoding of every partition
        c = open_consumer(settings)
        try:
            out = 0
            for (topic, _), msgs in read_range(c, topics).items():
                records, errors = decoders[topic[len(prefix) :]].decode_batch(msgs)
                out += len(records) + len(errors)
            return out
        finally:
            c.close()

    t_plain_decode, got = best(plain_decode, 2)
    assert got == n, (got, n)

    def full() -> int:  # input partitions consumed by the replay's worker processes
        cap = read_capture(settings, trange, with_control=False, lazy=True)
        return len(replay(cap, policy, collect_health=False).decisions)

    def sequential() -> int:  # one process: consume everything, then decode and fold
        cap = read_capture(settings, trange, with_control=False)
        return len(replay(cap, policy, collect_health=False, workers=1).decisions)

    t_replay, decisions = best(full, 2)
    t_seq, decisions_seq = best(sequential, 1)
    assert decisions == decisions_seq, (decisions, decisions_seq)
    from confluent_kafka.admin import AdminClient

    AdminClient(settings.kafka_client_config()).delete_topics([settings.topic(t.name) for t in TOPICS])
    return {
        "events": n,
        "plain_eps": n / t_plain,
        "replay_eps": n / t_replay,
        "ratio": t_plain / t_replay,
        "plain_decode_eps": n / t_plain_decode,
        "decode_ratio": t_plain_decode / t_replay,
        "seq_eps": n / t_seq,
        "seq_ratio": t_plain / t_seq,
    }


def where(title: str, total_us: float, parts: list[tuple[str, float]]) -> None:
    """Where one replay's time per event goes: measured parts, and the rest (merge, sort, partials)."""
    print(f"  where the time goes, {title} ({total_us:.2f} µs/event; parts measured alone):")
    rest = total_us - sum(us for _, us in parts)
    for name, us in parts:
        print(f"    {name:<34} {us:>6.2f} µs/event  {us / total_us:>6.1%}")
    if rest >= 0:
        print(f"    {'the rest: merge, sort, partials':<34} {rest:>6.2f} µs/event  {rest / total_us:>6.1%}")
    else:  # timing noise of a shared machine, or a part cheaper inside the replay than alone
        print(f"    the parts alone add up to {-rest:.2f} µs/event more than the whole: no remainder to show")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-kafka", action="store_true", help="file replay only")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    f = bench_file(args.devices, args.seconds, args.repeat)
    ok = "OK" if f["file_eps"] >= FILE_TARGET else "BELOW TARGET"
    print(
        f"events: {f['events']:,} ({args.devices} devices, {args.seconds} s), export file {f['file_mb']:.1f} MB, "
        f"{f['decisions']} decisions"
    )
    print(
        f"file replay (read + decode + merge + engine, {f['workers']} worker processes): {f['file_eps']:>10,.0f} events/s"
        f"  target >= {FILE_TARGET:,}  {ok}"
    )
    print(f"  the same, sequential (one process)        : {f['file_seq_eps']:>10,.0f} events/s")
    print(f"  read export file only (container)         : {f['read_eps']:>10,.0f} events/s")
    print(f"  read + build every raw record tuple       : {f['rows_eps']:>10,.0f} events/s")
    print(f"  decode only (streams.codecs)              : {f['decode_eps']:>10,.0f} events/s")
    print(f"  engine only (Engine.step, decoded events) : {f['engine_eps']:>10,.0f} events/s")
    print(f"  sequential replay of a loaded capture     : {f['replay_in_memory_eps']:>10,.0f} events/s")
    us = {k: 1e6 / f[k] for k in ("file_seq_eps", "rows_eps", "decode_eps", "engine_eps")}
    where(
        "sequential file replay",
        us["file_seq_eps"],
        [
            ("read file + build raw records", us["rows_eps"]),
            ("decode", us["decode_eps"]),
            ("fold (engine)", us["engine_eps"]),
        ],
    )
    result = dict(f)
    if not args.no_kafka:
        b = bench_broker(args.devices, args.seconds)
        ok = "OK" if b["ratio"] >= BROKER_RATIO_TARGET else "BELOW TARGET"
        print(
            f"broker: plain consume loop {b['plain_eps']:>10,.0f} msgs/s; replay {b['replay_eps']:>10,.0f} events/s; "
            f"ratio {b['ratio']:.2f}  target >= {BROKER_RATIO_TARGET}  {ok}"
        )
        print(
            f"  ratio to a plain consume + decode loop ({b['plain_decode_eps']:,.0f} events/s): {b['decode_ratio']:.2f}"
        )
        print(
            f"  sequential (one process consumes, decodes, folds): {b['seq_eps']:>10,.0f} events/s; "
            f"ratio {b['seq_ratio']:.2f}"
        )
        us_plain, us_decode = 1e6 / b["plain_eps"], 1e6 / b["plain_decode_eps"]
        where(
            "sequential broker replay",
            1e6 / b["seq_eps"],
            [
                ("consume", us_plain),
                ("decode", us_decode - us_plain),
                ("fold (engine, file run)", 1e6 / f["engine_eps"]),
            ],
        )
        result |= {f"broker_{k}": v for k, v in b.items()}
    print(
        f"load average (1 min) at start / end: {load0:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
        "(other processes take cores from the worker processes)"
    )
    return result


if __name__ == "__main__":
    main()
