"""Maintenance windows: cron matching, durations across midnight, time zones, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from edgefleet.sdk.protocol import MaintenanceWindow, next_window_start, window_open
from pydantic import ValidationError


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_daily_window_across_midnight():
    w = MaintenanceWindow(cron="30 23 * * *", duration_s=2 * 3600)  # 23:30-01:30 UTC
    assert w.is_open(utc(2026, 3, 10, 23, 30))
    assert w.is_open(utc(2026, 3, 11, 1, 29, 59))
    assert not w.is_open(utc(2026, 3, 11, 1, 30, 1))
    assert not w.is_open(utc(2026, 3, 11, 23, 29))
    assert w.next_start(utc(2026, 3, 11, 1, 31)) == utc(2026, 3, 11, 23, 30)


def test_weekdays_lists_steps_and_time_zone():
    # 02:00 and 04:00 local Berlin time, Monday to Friday (2026-03-13 is a Friday).
    w = MaintenanceWindow(cron="0 2-4/2 * * 1-5", duration_s=600, timezone="Europe/Berlin")
    assert w.is_open(utc(2026, 3, 13, 1, 5))  # 02:05 CET
    assert w.is_open(utc(2026, 3, 13, 3, 0))  # 04:00 CET
    assert not w.is_open(utc(2026, 3, 13, 2, 0))  # 03:00 CET: not a start hour
    assert not w.is_open(utc(2026, 3, 14, 1, 5))  # Saturday
    assert w.next_start(utc(2026, 3, 13, 3, 30)) == utc(2026, 3, 16, 1, 0)  # Monday 02:00 CET
    # Summer time: 02:00 CEST is 00:00 UTC.
    assert w.next_start(utc(2026, 7, 3, 23, 0)) == utc(2026, 7, 6, 0, 0)


def test_day_of_month_or_day_of_week_like_cron():
    w = MaintenanceWindow(cron="0 3 1 * 0", duration_s=3600)  # the 1st, or any Sunday
    assert w.is_open(utc(2026, 4, 1, 3, 10))  # Wednesday the 1st
    assert w.is_open(utc(2026, 4, 5, 3, 10))  # Sunday the 5th
    assert not w.is_open(utc(2026, 4, 6, 3, 10))
    assert MaintenanceWindow(cron="0 3 * * 7", duration_s=60).is_open(utc(2026, 4, 5, 3, 0))


def test_no_windows_means_always_open_and_any_window_opens():
    now = utc(2026, 1, 1, 12, 0)
    assert window_open([], now)
    ws = [MaintenanceWindow(cron="0 1 * * *", duration_s=60),
          MaintenanceWindow(cron="55 11 * * *", duration_s=600)]  # fmt: skip
    assert window_open(ws, now)
    assert not window_open(ws[:1], now)
    assert next_window_start(ws[:1], now) == utc(2026, 1, 2, 1, 0)
    assert next_window_start([MaintenanceWindow(cron="0 0 31 2 *", duration_s=60)], now) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "0 2 * *", "duration_s": 60}, "expected 5 cron fields"),
        ({"cron": "0 24 * * *", "duration_s": 60}, "cron hour: '24' is outside 0-23"),
        ({"cron": "x 2 * * *", "duration_s": 60}, "cron minute: expected a number"),
        ({"cron": "0 2 * * *", "duration_s": 10}, "greater than or equal to 60"),
        ({"cron": "0 2 * * *", "duration_s": 60, "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_bad_windows_say_what_was_expected(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        MaintenanceWindow(**kwargs)
