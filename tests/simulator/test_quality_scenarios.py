"""The scenarios of the decision-quality benchmark change exactly what they claim (fast mode, no broker)."""

from __future__ import annotations

from collections import Counter
from statistics import mean

from gates.events import Ack, AckStatus, Telemetry
from streams.codecs import Decoder
from streams.simulator import ACKS, device_id, generate_fleet, scenario
from tests.simulator.helpers import NEW_FW, START_MS, new_run, update_all

T_UPDATE = START_MS + 30_000
BASE_FW = "4.1.0"


def _records(run) -> list[tuple[int, Telemetry | Ack]]:  # type: ignore[no-untyped-def]
    """(record timestamp, decoded record) in emission order, whatever the device clocks say."""
    tel, acks = Decoder.telemetry(), Decoder.ack()
    out = []
    for stream, _key, value, headers, ts in run.raw:
        rec = (acks if stream == ACKS else tel).decode(value, headers, ts)
        assert isinstance(rec, Ack | Telemetry), rec
        out.append((ts, rec))
    return out


def test_clock_offset_shifts_payload_times_of_its_devices_only() -> None:
    for name, offset in (("clock-behind", -7_200_000), ("clock-ahead", 240_000)):
        run = new_run(name, 400)
        update_all(run, T_UPDATE)
        run.sim.advance(T_UPDATE + 60_000)
        skewed = set(run.sim.stats.effect_devices["clock_offset"])
        assert 0.02 * 400 < len(skewed) < 0.09 * 400
        seen: Counter[bool] = Counter()
        for ts, rec in _records(run):
            i = int(rec.device_id[4:])
            # legacy JSON carries whole seconds
            assert abs(rec.event_time_ms - ts - (offset if i in skewed else 0)) < 1000, (name, rec)
            seen[i in skewed] += 1
        assert seen[True] > 50 and seen[False] > 1000
        assert {a.status for _, a in _records(run) if isinstance(a, Ack) and int(a.device_id[4:]) in skewed} >= {
            AckStatus.RECEIVED, AckStatus.APPLIED
        }  # fmt: skip


def test_silent_after_apply_devices_ack_then_send_nothing_on_the_new_firmware() -> None:
    run = new_run("silent-after-apply", 400)
    update_all(run, T_UPDATE)
    run.sim.advance(T_UPDATE + 90_000)
    silent = set(run.sim.stats.effect_devices["silent_after_apply"])
    fleet = run.sim.fleet
    gw100 = set(fleet.select({"model": ["gw-100"]}))
    assert silent and silent <= gw100 and len(silent) < len(gw100)
    recs = _records(run)
    applied = {int(a.device_id[4:]) for _, a in recs if isinstance(a, Ack) and a.status is AckStatus.APPLIED}
    new_fw = {
        int(t.device_id[4:]) for _, t in recs if isinstance(t, Telemetry) and t.firmware_version == NEW_FW
    }
    assert silent <= applied and not silent & new_fw
    assert (gw100 - silent) & new_fw and len(new_fw) > 0.8 * 400 - len(silent)
    old = {
        int(t.device_id[4:]) for _, t in recs if isinstance(t, Telemetry) and t.firmware_version == BASE_FW
    }
    assert silent <= old  # they did report before the update


def test_sleepy_late_fails_arrive_after_the_outage_with_their_old_event_times() -> None:
    run = new_run("sleepy-late-fails", 300, profiles="realistic")  # sleepy: one report an hour
    update_all(run, T_UPDATE)
    hours3 = 3 * 3_600_000
    run.sim.advance(T_UPDATE + hours3 - 60_000)
    dropped = set(run.sim.stats.effect_devices["drop_mid_update"])
    fleet = run.sim.fleet
    sleepy = set(fleet.select({"connectivity_profile": ["sleepy"]}))
    assert dropped and dropped <= sleepy and len(dropped) < len(sleepy)
    early = [a for _, a in _records(run) if isinstance(a, Ack) and a.status is AckStatus.FAILED]
    assert not [a for a in early if int(a.device_id[4:]) in dropped]
    n = len(run.raw)
    run.sim.advance(T_UPDATE + hours3 + 3_600_000 + 180_000)  # the last wake-up is within the hour
    late = [rec for _, rec in _records(run)[n:] if isinstance(rec, Ack) and rec.status is AckStatus.FAILED]
    assert {int(a.device_id[4:]) for a in late} == dropped
    for a in late:  # stamped when the link dropped, mid-update, at most an hour after the command
        assert a.event_time_ms < T_UPDATE + 3_600_000 + 120_000 and a.error_code in ("E_CONN_LOST", None)
    assert run.sim.stats.late_acks >= len(late)


def test_metric_missing_part_and_noisy_healthy() -> None:
    run = new_run("metric-missing-part", 400)
    update_all(run, T_UPDATE)
    run.sim.advance(T_UPDATE + 60_000)
    gone = set(run.sim.stats.effect_devices["metric_vanishes"])
    gw200 = set(run.sim.fleet.select({"model": ["gw-200"]}))
    assert gone and gone < gw200
    for _, t in _records(run):
        if isinstance(t, Telemetry) and t.firmware_version == NEW_FW:
            assert ("memory_free_kb" in t.metrics) != (int(t.device_id[4:]) in gone)
    noisy = new_run("noisy-healthy", 2000, profiles="demo")
    update_all(noisy, T_UPDATE)
    noisy.sim.advance(T_UPDATE + 30_000)
    fails = [a for _, a in _records(noisy) if isinstance(a, Ack) and a.error_code == "E_TRANSIENT"]
    assert 0.004 * 2000 < len(fails) < 0.025 * 2000
    assert scenario("noisy-healthy").bad_cohort is None


def test_format_switch_fleet_is_mostly_legacy_and_default_fleets_are_unchanged() -> None:
    sc = scenario("format-switch")
    fleet = generate_fleet(3000, 5, sc.generations)
    share = Counter(fleet.generation)
    assert 0.35 < share[0] / 3000 < 0.45 and 0.25 < share[1] / 3000 < 0.35
    default = generate_fleet(3000, 5)
    assert bytes(generate_fleet(3000, 5, (0.1, 0.2, 0.7)).generation) == bytes(default.generation)
    assert 0.07 < Counter(default.generation)[0] / 3000 < 0.13
    assert [device_id(i) for i in range(2)] == ["dev-0000000", "dev-0000001"]


def test_latency_factor_of_a_slice() -> None:
    run = new_run("slice-latency", 1500)
    update_all(run, T_UPDATE)
    run.sim.advance(T_UPDATE + 60_000)
    fleet = run.sim.fleet
    slow = set(fleet.select({"region": ["us-east"], "connectivity_profile": ["flaky-cellular"]}))
    lat: dict[bool, list[float]] = {True: [], False: []}
    for _, t in _records(run):
        if isinstance(t, Telemetry) and t.firmware_version == NEW_FW and t.command_latency_ms:
            if fleet.attributes(int(t.device_id[4:])).connectivity_profile == "flaky-cellular":
                lat[int(t.device_id[4:]) in slow].append(t.command_latency_ms)
    assert 1.7 < mean(lat[True]) / mean(lat[False]) < 2.3
