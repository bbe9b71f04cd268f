"""Time arguments: ISO-8601 UTC or epoch ms, clear messages for everything else (pure)."""

from __future__ import annotations

import pytest

from streams.cli import main
from streams.replay.errors import ReplayError
from streams.replay.timerange import TimeRange, format_ms, parse_time


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-05-01T12:00:00Z", 1_714_564_800_000),
        ("2024-05-01T14:00:00+02:00", 1_714_564_800_000),
        ("2024-05-01T12:00:00", 1_714_564_800_000),  # no zone: UTC
        ("2024-05-01T12:00:00.250Z", 1_714_564_800_250),
        ("1714564800000", 1_714_564_800_000),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time(text, "--from") == ms
    assert parse_time(format_ms(ms), "--from") == ms


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("yesterday", "2024-05-01T12:00:00Z", "--from 'yesterday': not a time"),
        ("2024-05-01T12:00:00Z", "2024-13-01", "--to '2024-13-01': not a time"),
        ("1714564800", "1714564900", "epoch seconds? multiply by 1000"),
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z", "is not after --from"),
        ("2024-05-01T13:00:00Z", "2024-05-01T12:00:00Z", "is not after --from"),
        (None, "2024-05-01T12:00:00Z", "both --from and --to are required"),
    ],
)
def test_bad_ranges_are_refused(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(ReplayError, match=message.replace("?", r"\?").replace("(", r"\(")):
        TimeRange.parse(start, end)


def test_cli_bad_range_exits_non_zero_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--from", "2024-05-01T13:00:00Z", "--to", "2024-05-01T12:00:00Z"]) == 2
    assert "is not after --from" in capsys.readouterr().err
    assert main(["replay", "--from", "soon", "--to", "later"]) == 2
    assert "not a time" in capsys.readouterr().err
    assert main(["export", "--from", "1", "--to", "2", "-o", "/nonexistent/x.avro"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_cli_missing_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert main(["replay", "--file", str(tmp_path / "nope.avro")]) == 2
    assert "No such file" in capsys.readouterr().err
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"not avro at all")
    assert main(["replay", "--file", str(bad)]) == 2
    assert "not an Avro object container file" in capsys.readouterr().err
