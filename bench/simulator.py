"""Fleet simulator throughput: generation + encoding, producing to Kafka, and a fastavro baseline.

* generate+encode: fast mode (synthetic time) into a counting sink, every format mixed as the
  fleet has it (gen1 legacy JSON, gen2 Avro v1, gen3 Avro v2, single-object framing);
* baseline (same run): plain ``fastavro.schemaless_writer`` of the same telemetry records as
  Avro v2 dicts, writer schema parsed once -- encoding only, no generation;
* produce: the same generation with the Kafka sink into fresh bench topics (murmur2, lz4),
  counted until ``flush()`` returns; the topics are deleted afterwards.

One core.  Usage::

    python bench/simulator.py [--devices 100000] [--seconds 300] [--produce-events 500000] [--no-kafka]
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid
from io import BytesIO

from fastavro import schemaless_writer

from streams.codecs import Decoder, default_catalogue
from streams.codecs.mapping import telemetry_to_avro
from streams.config import load_settings
from streams.simulator import TELEMETRY, SimulatorConfig, build_simulator, generate_fleet

START_MS = 1_764_000_000_000


def generate(devices: int, seconds: int, profiles: str, fleet=None) -> tuple[float, int, float, list]:  # type: ignore[no-untyped-def]
    sample: list = []
    count = [0]

    def sink(stream: int, key: bytes, value: bytes, headers: list, ts: int) -> None:
        count[0] += 1
        if stream == TELEMETRY and len(sample) < 100_000:
            sample.append((value, headers, ts))

    t0 = time.perf_counter()
    sim = build_simulator(
        SimulatorConfig(devices=devices, seed=1, profile_set=profiles), sink, START_MS, fleet
    )
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim.advance(START_MS + seconds * 1000)
    return count[0] / (time.perf_counter() - t0), count[0], init_s, sample


def baseline(sample: list) -> float:
    dec = Decoder.telemetry()
    records = [telemetry_to_avro(dec.decode(v, h, ts), 2) for v, h, ts in sample]
    schema = default_catalogue().get("telemetry", 2).parsed
    t0 = time.perf_counter()
    for r in records:
        buf = BytesIO()
        schemaless_writer(buf, schema, r)
        buf.getvalue()
    return len(records) / (time.perf_counter() - t0)


def produce(devices: int, events: int, profiles: str, fleet) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    from streams.simulator import KafkaSink
    from streams.topics import create_topics

    settings = load_settings(topic_prefix=f"bench.{uuid.uuid4().hex[:8]}.")
    names = [settings.topic("telemetry"), settings.topic("acks"), settings.topic("device-commands")]
    create_topics(settings)
    sink = KafkaSink(settings)
    try:
        sim = build_simulator(
            SimulatorConfig(devices=devices, seed=1, profile_set=profiles), sink, START_MS, fleet
        )
        t0 = time.perf_counter()
        t = START_MS
        while sim.stats.events < events:
            t += 1000
            sim.advance(t)
        left = sink.flush(60)
        dt = time.perf_counter() - t0
        return (sim.stats.events - left) / dt, sim.stats.events
    finally:
        AdminClient(settings.kafka_client_config()).delete_topics(
            [n for n in names if n.startswith("bench.")], operation_timeout=30
        )


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=300, help="synthetic seconds to generate")
    ap.add_argument("--profiles", default="realistic")
    ap.add_argument("--produce-events", type=int, default=500_000)
    ap.add_argument("--no-kafka", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    fleet = generate_fleet(args.devices, 1)
    fleet_s = time.perf_counter() - t0
    eps, n, init_s, sample = generate(args.devices, args.seconds, args.profiles, fleet)
    base = baseline(sample)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"generate_eps": eps, "baseline_eps": base}
    print(
        f"devices {args.devices:,}: fleet {fleet_s:.2f} s, simulator state {init_s:.2f} s, peak RSS {rss_mb:.0f} MB"
    )
    print(f"generate+encode   {eps:12,.0f} events/s  ({n:,} events, {args.seconds} synthetic s, profiles {args.profiles})")  # fmt: skip
    print(f"fastavro baseline {base:12,.0f} records/s (schemaless_writer, v2 dicts, encode only)  ratio {eps / base:.2f}")  # fmt: skip
    if not args.no_kafka:
        p_eps, p_n = produce(args.devices, args.produce_events, args.profiles, fleet)
        out["produce_eps"] = p_eps
        print(
            f"produce to Kafka  {p_eps:12,.0f} events/s  ({p_n:,} events, generate+encode+produce, until flush)"
        )
    return out


if __name__ == "__main__":
    main()
