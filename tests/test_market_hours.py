"""Exchange time is Asia/Kolkata whatever the host's zone is."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from tradebot import market_hours as mh

UTC = ZoneInfo("UTC")


def test_the_session_opens_at_0915_ist_given_a_utc_moment():
    just_before = datetime(2026, 12, 3, 3, 44, tzinfo=UTC)  # 09:14 IST
    at_open = datetime(2026, 12, 3, 3, 45, tzinfo=UTC)  # 09:15 IST

    assert not mh.is_market_open(just_before)
    assert mh.is_market_open(at_open)


def test_the_session_is_closed_at_1530_ist():
    assert not mh.is_market_open(datetime(2026, 12, 3, 15, 30, tzinfo=mh.IST))
    assert mh.is_market_open(datetime(2026, 12, 3, 15, 29, 59, tzinfo=mh.IST))


def test_weekends_and_holidays_are_not_trading_days():
    assert not mh.is_trading_day(date(2026, 12, 5))  # Saturday
    assert not mh.is_trading_day(date(2026, 12, 25))  # Christmas
    assert mh.is_trading_day(date(2026, 12, 24))


def test_the_paper_market_can_stay_open_at_night():
    night = datetime(2026, 12, 5, 2, 0, tzinfo=mh.IST)

    assert not mh.is_market_open(night)
    assert mh.is_market_open(night, always_open=True)


def test_a_naive_datetime_is_refused():
    with pytest.raises(mh.NaiveDatetimeError):
        mh.is_market_open(datetime(2026, 12, 3, 10, 0))


def test_next_open_skips_the_weekend():
    friday_evening = datetime(2026, 12, 4, 16, 0, tzinfo=mh.IST)

    assert mh.next_open(friday_evening) == datetime(2026, 12, 7, 9, 15, tzinfo=mh.IST)


def test_answers_are_identical_on_a_utc_host():
    code = (
        "from datetime import datetime, timezone;"
        "from tradebot.market_hours import is_market_open, next_open;"
        "m = datetime(2026, 12, 3, 4, 0, tzinfo=timezone.utc);"
        "print(is_market_open(m), next_open(datetime(2026,12,4,11,0,tzinfo=timezone.utc)))"
    )
    outputs = {
        zone: subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "TZ": zone},
            capture_output=True, text=True, check=True,
        ).stdout
        for zone in ("UTC", "Asia/Kolkata", "America/New_York")
    }

    assert len(set(outputs.values())) == 1
    assert outputs["UTC"].strip() == "True 2026-12-07 09:15:00+05:30"


def test_holidays_can_be_extended_from_a_file(tmp_path, monkeypatch):
    extra = tmp_path / "holidays.txt"
    extra.write_text("2027-01-26  # Republic Day\n")
    monkeypatch.setenv("NSE_HOLIDAYS_FILE", str(extra))
    mh.holidays.cache_clear()

    try:
        assert not mh.is_trading_day(date(2027, 1, 26))
        assert mh.calendar_covers(2027)
    finally:
        mh.holidays.cache_clear()
