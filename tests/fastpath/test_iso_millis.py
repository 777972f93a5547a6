"""The remembered-second timestamps (Heartbeat and BootNotification answers, profile start and end) are
datetime's, to the letter."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import example, given, strategies as st

from csms.runtime.isotime import iso_millis, iso_seconds


def reference(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 to 2100
@example(1_700_000_000.9999996)   # rounds up into the next second
@example(1_700_000_000.0004995)
@example(1_700_000_000.0000005)   # half a microsecond: half to even
@example(1_700_000_000.0)
@example(0.0)
def test_same_as_datetime(t: float) -> None:
    assert iso_millis(t) == reference(t)


def test_second_changes_between_calls() -> None:
    assert iso_millis(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert iso_millis(1_700_000_001.25) == "2023-11-14T22:13:21.250Z"
    assert iso_millis(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"


@given(st.floats(min_value=0, max_value=4_102_444_800))
@example(1_700_000_000.9999996)   # rounds up into the next second
@example(1_700_000_000.9999994)   # stays in this one
@example(0.0)
def test_seconds_same_as_datetime(t: float) -> None:
    assert iso_seconds(t) == datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")
