"""Each scenario changes exactly what it claims (fast mode, synthetic time, no broker)."""

from __future__ import annotations

from statistics import mean

from gates.events import AckStatus, CommandKind, SourceFormat, TargetKind
from streams.simulator import SCENARIOS, device_id, generate_fleet
from tests.simulator.helpers import NEW_CFG, NEW_FW, START_MS, command, new_run, update_all

T_UPDATE = START_MS + 30_000
T_END = START_MS + 120_000
BASE_FW = "4.1.0"


def _run_update(
    name: str, devices: int = 300, target: TargetKind = TargetKind.FIRMWARE, version: str = NEW_FW
):
    run = new_run(name, devices)
    update_all(run, T_UPDATE, target, version)
    run.sim.advance(T_END)
    return run


def _final(acks):
    return [a for a in acks if a.status.terminal]


def test_same_seed_gives_byte_identical_streams_and_another_seed_does_not() -> None:
    a, b = _run_update("bad-model", 200), _run_update("bad-model", 200)
    assert a.raw == b.raw and len(a.raw) > 5000
    c = new_run("bad-model", 200, seed=12)
    update_all(c, T_UPDATE)
    c.sim.advance(T_END)
    assert c.raw != a.raw


def test_every_format_is_emitted_and_decodes() -> None:
    run = new_run("healthy", 300)
    run.sim.advance(START_MS + 30_000)
    tel, acks = run.decoded()
    assert not acks
    assert {t.source_format for t in tel} == {
        SourceFormat.JSON_LEGACY,
        SourceFormat.AVRO_V1,
        SourceFormat.AVRO_V2,
    }
    fleet = run.sim.fleet
    gen = {device_id(i): fleet.generation[i] for i in range(fleet.size)}
    expected = (SourceFormat.JSON_LEGACY, SourceFormat.AVRO_V1, SourceFormat.AVRO_V2)
    assert all(t.source_format is expected[gen[t.device_id]] for t in tel)


def test_healthy_update_applies_everywhere_and_new_firmware_speaks_avro_v2() -> None:
    run = _run_update("healthy")
    tel, acks = run.by_device()
    fleet = run.sim.fleet
    applied = failed = 0
    for i in range(fleet.size):
        did = device_id(i)
        final = _final(acks[did])
        assert final, did
        if final[-1].status is AckStatus.APPLIED:
            applied += 1
            after = [t for t in tel[did] if t.event_time_ms >= final[-1].event_time_ms]
            assert after and all(
                t.firmware_version == NEW_FW and t.source_format is SourceFormat.AVRO_V2 for t in after
            )
            assert after[0].rebooted and after[0].uptime_s <= 21  # sleepy: next report within 20 s
        else:  # a flaky link lost mid-update: last known good kept, FAILED E_CONN_LOST
            failed += 1
            assert final[-1].status is AckStatus.FAILED and final[-1].error_code == "E_CONN_LOST"
            assert fleet.attributes(i).connectivity_profile == "flaky-cellular"
            assert tel[did][-1].firmware_version == BASE_FW
        assert [a.status for a in acks[did]][:2] == [AckStatus.RECEIVED, AckStatus.DOWNLOADING]
    assert applied > 0.95 * fleet.size
    ack_versions = {a.source_format for a in run.decoded()[1]}
    assert ack_versions == {SourceFormat.AVRO_V1, SourceFormat.AVRO_V2}  # gen1 acks v1 before the update


def test_bad_model_fails_exactly_cam_c1() -> None:
    run = _run_update("bad-model")
    tel, acks = run.by_device()
    fleet = run.sim.fleet
    for i in range(fleet.size):
        did = device_id(i)
        final = _final(acks[did])[-1]
        if fleet.attributes(i).model == "cam-c1":
            assert final.status is AckStatus.FAILED
            if final.source_format is SourceFormat.AVRO_V2:
                assert final.error_code == "E_FLASH_VERIFY" and final.rollout_id == "r-1"
            assert {t.firmware_version for t in tel[did]} == {BASE_FW}
        else:
            assert final.status is AckStatus.APPLIED or final.error_code == "E_CONN_LOST"
    cams = {device_id(i) for i in fleet.select({"model": ["cam-c1"]})}
    assert run.sim.stats.observed()["effects"]["apply_fails"]["device_ids"] == sorted(cams)


def test_metric_vanishes_only_for_sensor_s2_on_new_firmware() -> None:
    run = _run_update("metric-vanishes")
    tel, _ = run.decoded()
    fleet = run.sim.fleet
    model = {device_id(i): fleet.attributes(i).model for i in range(fleet.size)}
    new = [t for t in tel if t.firmware_version == NEW_FW]
    assert all(t.source_format is SourceFormat.AVRO_V2 for t in new)
    s2 = [t for t in new if model[t.device_id] == "sensor-s2"]
    others = [t for t in new if model[t.device_id] != "sensor-s2"]
    assert s2 and others
    assert all("memory_free_kb" not in t.metrics for t in s2)
    assert all("memory_free_kb" in t.metrics for t in others)
    old_s2_v2 = [t for t in tel if t.firmware_version == BASE_FW and t.source_format is SourceFormat.AVRO_V2]
    assert all("memory_free_kb" in t.metrics for t in old_s2_v2)


def test_latency_regression_triples_command_latency_on_new_firmware() -> None:
    run = _run_update("latency-regression")
    tel, _ = run.decoded()
    profile = {device_id(i): run.sim.fleet.attributes(i).connectivity_profile for i in range(300)}
    for p in ("always-on", "flaky-cellular"):
        old = [t.command_latency_ms for t in tel if t.command_latency_ms and t.firmware_version == BASE_FW and profile[t.device_id] == p]  # fmt: skip
        new = [t.command_latency_ms for t in tel if t.command_latency_ms and t.firmware_version == NEW_FW and profile[t.device_id] == p]  # fmt: skip
        assert 2.6 < mean(new) / mean(old) < 3.4, p
    healthy = _run_update("healthy")
    h_tel, _ = healthy.decoded()
    old = [t.command_latency_ms for t in h_tel if t.command_latency_ms and t.firmware_version == BASE_FW]
    new = [t.command_latency_ms for t in h_tel if t.command_latency_ms and t.firmware_version == NEW_FW]
    assert 0.8 < mean(new) / mean(old) < 1.25


def test_reconnect_storm_reports_late_failed_acks_in_a_burst() -> None:
    run = new_run("reconnect-storm")
    update_all(run, T_UPDATE)
    storm_outage = run.sim.pset.storm_outage_ms
    run.sim.advance(T_UPDATE + storm_outage - 5_000)
    _, early = run.by_device()
    assert not any(a.error_code == "E_CONN_LOST" and a.status is AckStatus.FAILED and a.device_id in _storm(run) for v in early.values() for a in v)  # fmt: skip
    run.sim.advance(T_UPDATE + storm_outage + 30_000)
    tel, acks = run.by_device()
    storm = _storm(run)
    assert len(storm) > 10
    late = []
    for did in storm:
        final = _final(acks[did])
        assert final and final[-1].status is AckStatus.FAILED, did
        late.append(final[-1])
        assert {t.firmware_version for t in tel[did]} == {BASE_FW}  # last known good kept
    # event times are from around the update, produced only after the outage: late events
    assert all(a.event_time_ms < T_UPDATE + 10_000 for a in late)
    positions = [n for n, (s, k, v, h, ts) in enumerate(run.raw) if s == 1 and k.decode() in storm and ts in {a.event_time_ms for a in late}]  # fmt: skip
    produced_after = [run.raw[p - 1][4] for p in positions if p > 0]
    assert max(produced_after) - min(a.event_time_ms for a in late) > storm_outage * 0.8
    assert run.sim.stats.late_acks >= len(storm)


def _storm(run) -> set[str]:
    return {device_id(i) for i in run.sim.fleet.select({"connectivity_profile": ["flaky-cellular"]}, 0.7)}


def test_chatty_config_reports_ten_times_as_often_and_keeps_firmware() -> None:
    run = _run_update("chatty-config", target=TargetKind.CONFIG, version=NEW_CFG)
    tel, acks = run.by_device()
    fleet = run.sim.fleet
    ratios = []
    for i in range(fleet.size):
        did = device_id(i)
        final = _final(acks[did])
        if (
            not final
            or final[-1].status is not AckStatus.APPLIED
            or fleet.attributes(i).connectivity_profile != "always-on"
        ):
            continue
        t_apply = final[-1].event_time_ms
        before = [t for t in tel[did] if START_MS + 5_000 <= t.event_time_ms < t_apply]
        after = [t for t in tel[did] if t_apply + 2_000 <= t.event_time_ms]
        assert all(t.firmware_version == BASE_FW and not t.rebooted for t in after)
        rate_before = len(before) / (t_apply - START_MS - 5_000)
        rate_after = len(after) / (T_END - t_apply - 2_000)
        ratios.append(rate_after / rate_before)
        assert all(t.config_version == NEW_CFG for t in after if t.source_format is SourceFormat.AVRO_V2)
    assert ratios and 8 < mean(ratios) < 12


def test_rollback_refused_by_gw_200_with_downgrade_refused() -> None:
    run = _run_update("rollback-refused")
    t_rb = T_END + 1_000
    run.sim.advance(t_rb - 1)
    for i in range(run.sim.fleet.size):
        run.sim.submit(command(i, CommandKind.ROLLBACK, version=BASE_FW, n=1, at_ms=t_rb), t_rb)
    run.sim.advance(t_rb + 120_000)
    tel, acks = run.by_device()
    fleet = run.sim.fleet
    refused = rolled = 0
    for i in range(fleet.size):
        did = device_id(i)
        # v1 acks (gen1 devices back on their original firmware) carry no command id: match by time
        rb = [a for a in acks[did] if a.event_time_ms >= t_rb // 1000 * 1000 and a.status.terminal]
        assert all(a.command_id in (None, f"c-ROLLBACK-1-{i}") for a in rb)
        assert len(rb) == 1, did
        updated = any(a.status is AckStatus.APPLIED for a in acks[did])
        if updated and fleet.attributes(i).model == "gw-200":
            assert rb[0].status is AckStatus.REJECTED and rb[0].error_code == "downgrade_refused"
            assert tel[did][-1].firmware_version == NEW_FW
            refused += 1
        else:
            assert rb[0].status is AckStatus.ROLLED_BACK
            assert tel[did][-1].firmware_version == BASE_FW
            rolled += updated
    assert refused and rolled
    errors_new = [t.errors for t in run.decoded()[0] if t.firmware_version == NEW_FW]
    errors_old = [t.errors for t in run.decoded()[0] if t.firmware_version == BASE_FW]
    assert mean(errors_new) > 3 and mean(errors_old) < 0.1


def test_sleepy_devices_get_commands_only_when_they_wake() -> None:
    run = new_run("healthy", 300)
    fleet = run.sim.fleet
    sleepy = fleet.select({"connectivity_profile": ["sleepy"]})[:5]
    run.sim.advance(T_UPDATE - 1)
    for i in sleepy:
        run.sim.submit(command(i, at_ms=T_UPDATE), T_UPDATE)
    run.sim.advance(T_UPDATE + 60_000)
    tel, acks = run.by_device()
    delays = []
    for i in sleepy:
        did = device_id(i)
        received = next(a for a in acks[did] if a.status is AckStatus.RECEIVED)
        wake = min(t.event_time_ms for t in tel[did] if t.event_time_ms >= T_UPDATE)
        assert received.event_time_ms // 1000 == wake // 1000  # v1 and JSON carry seconds
        delays.append(wake - T_UPDATE)
    assert max(delays) > 2_000  # not at once: at the next wake-up (20 s period)


def test_duplicate_command_in_flight_is_ignored_and_a_resend_is_a_new_attempt() -> None:
    run = new_run("bad-model", 100)
    i = run.sim.fleet.select({"model": ["cam-c1"], "firmware_generation": ["gen3"], "connectivity_profile": ["always-on"]})[0]  # fmt: skip
    run.sim.advance(T_UPDATE - 1)
    run.sim.submit(command(i), T_UPDATE)
    run.sim.submit(command(i), T_UPDATE + 200)
    run.sim.advance(T_UPDATE + 10_000)
    run.sim.submit(command(i), T_UPDATE + 10_000)
    run.sim.advance(T_UPDATE + 20_000)
    _, acks = run.by_device()
    finals = [(a.status, a.attempt) for a in acks[device_id(i)] if a.status.terminal]
    assert finals == [(AckStatus.FAILED, 1), (AckStatus.FAILED, 2)]
    assert run.sim.stats.ignored_commands == 1


def test_registry_and_ground_truth() -> None:
    from streams.simulator import ground_truth

    assert set(SCENARIOS) == {"healthy", "bad-model", "metric-vanishes", "latency-regression",
                              "reconnect-storm", "chatty-config", "rollback-refused", "clock-behind",
                              "clock-ahead", "slice-latency", "model-low-rate-fails", "sleepy-late-fails",
                              "silent-after-apply", "metric-missing-part", "noisy-healthy",
                              "format-switch"}  # fmt: skip
    fleet = generate_fleet(200, 4)
    truth = ground_truth(fleet, SCENARIOS["bad-model"], baseline_firmware="4.1.0", baseline_config="cfg-41")
    assert truth["bad_cohort"] == {"model": ["cam-c1"]} and truth["expected_action"] == "ROLLBACK"
    assert truth["effects"][0]["device_ids"] == [device_id(i) for i in fleet.select({"model": ["cam-c1"]})]
    healthy = ground_truth(fleet, SCENARIOS["healthy"], baseline_firmware="4.1.0", baseline_config="cfg-41")
    assert healthy["bad_cohort"] is None and healthy["expected_action"] is None and healthy["effects"] == []


def test_engine_bytes_equal_the_codecs_encoder_of_the_decoded_records() -> None:
    from streams.codecs import Decoder, Encoder, Framing

    run = _run_update("metric-vanishes", 200)
    enc, dec = Encoder(), Decoder.telemetry()
    versions = {SourceFormat.AVRO_V1: 1, SourceFormat.AVRO_V2: 2}
    checked = 0
    for stream, _key, value, headers, ts in run.raw:
        if stream != 0:
            continue
        rec = dec.decode(value, headers, ts)
        if rec.source_format is SourceFormat.JSON_LEGACY:
            assert headers == [] and enc.encode(rec, Framing.JSON)[0] == value
        else:
            assert enc.encode(rec, Framing.SINGLE_OBJECT, version=versions[rec.source_format]) == (
                value,
                headers,
            )
        checked += 1
    assert checked > 1000


def test_rollback_during_an_update_supersedes_it() -> None:
    run = new_run("healthy", 100)
    i = run.sim.fleet.select({"connectivity_profile": ["always-on"]})[1]
    run.sim.advance(T_UPDATE - 1)
    run.sim.submit(command(i), T_UPDATE)
    run.sim.advance(T_UPDATE + 300)  # received, still downloading
    run.sim.submit(command(i, CommandKind.ROLLBACK, version=BASE_FW, n=1), T_UPDATE + 300)
    run.sim.advance(T_UPDATE + 20_000)
    tel, acks = run.by_device()
    did = device_id(i)
    assert [a.status for a in acks[did] if a.status.terminal] == [AckStatus.ROLLED_BACK]
    assert {t.firmware_version for t in tel[did]} == {BASE_FW}
