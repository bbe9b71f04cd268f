"""The inventory topic's pure parts: versions as of a time, bounded history, the record's bytes."""

from __future__ import annotations

import pytest

from gates.events import DeviceAttributes
from streams.inventory_topic import (
    MAX_VERSIONS,
    AttributeVersion,
    as_of,
    decode_record,
    encode_record,
    history_from_json,
    history_to_json,
    with_version,
)

A = DeviceAttributes("d1", model="m1", region="eu-west")
B = DeviceAttributes("d1", model="m1", region="us-east")


def test_as_of_picks_the_version_in_effect_and_the_oldest_before_any() -> None:
    h = (AttributeVersion(1_000, A), AttributeVersion(5_000, B))
    assert as_of(h, 0) == A  # before the first load: the oldest version answers
    assert as_of(h, 1_000) == A and as_of(h, 4_999) == A
    assert as_of(h, 5_000) == B and as_of(h, 10**13) == B


def test_with_version_adds_only_changes_and_stays_bounded() -> None:
    h = with_version((), A, 1_000)
    assert h == (AttributeVersion(1_000, A),)
    assert with_version(h, A, 2_000) is None  # same attributes: no new version
    h2 = with_version(h, B, 3_000)
    assert h2 is not None and [v.valid_from_ms for v in h2] == [1_000, 3_000]
    # a correction back-dated between two versions lands in order
    h3 = with_version(h2, DeviceAttributes("d1", site="s9"), 2_000)
    assert h3 is not None and [v.valid_from_ms for v in h3] == [1_000, 2_000, 3_000]
    long = h
    for i in range(40):
        nxt = with_version(long, DeviceAttributes("d1", site=f"s{i}"), 10_000 + i)
        assert nxt is not None
        long = nxt
    assert len(long) == MAX_VERSIONS and long[-1].attrs.site == "s39"


def test_record_round_trips_and_bad_bytes_are_named() -> None:
    h = (AttributeVersion(1_000, A), AttributeVersion(5_000, B))
    value, headers = encode_record("d1", h, 6_000)
    assert value[:2] == b"\xc3\x01"
    assert dict(headers)["fg-schema"] == b"dev.fleetgate.inventory.DeviceInventory"
    assert decode_record(value) == ("d1", h)
    assert history_from_json("d1", history_to_json(h)) == h
    with pytest.raises(ValueError, match="single-object"):
        decode_record(b'{"device_id": "d1"}')
    with pytest.raises(ValueError, match="corrupt"):
        decode_record(value[:14])
