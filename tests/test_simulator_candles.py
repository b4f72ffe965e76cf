"""Historical candles (smartapi.md §1.8): caps, session times, holidays, determinism."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from simulator.candles import INTERVALS, CandleModel, CandleRequestError, parse_ist
from simulator.testing import start_simulator
from tradebot.market_hours import IST, holidays

NOW = datetime(2026, 12, 3, 20, 0, tzinfo=IST)


@pytest.fixture(scope="module")
def sim():
    with start_simulator(enforce_rate_limits=False, tick_rate=1) as running:
        yield running


@pytest.fixture(scope="module")
def api(sim):
    client = sim.client()
    assert client.login().status == 200
    return client


def candles(api, interval: str, start: str, end: str, token: str = "3045"):
    return api.call("getCandleData", {"exchange": "NSE", "symboltoken": token,
                                      "interval": interval, "fromdate": start, "todate": end})


@pytest.fixture
def model():
    return CandleModel(42, {"3045": 805.0, "2885": 1285.0})


def test_one_minute_rows_cover_the_session_with_ist_stamps(api):
    reply = candles(api, "ONE_MINUTE", "2026-12-01 09:00", "2026-12-01 16:00")

    assert reply.json["status"] is True
    rows = reply.data
    assert len(rows) == 375
    assert rows[0][0] == "2026-12-01T09:15:00+05:30"
    assert rows[-1][0] == "2026-12-01T15:29:00+05:30"
    stamp, o, h, low, c, v = rows[10]
    assert isinstance(v, int) and all(isinstance(x, float) for x in (o, h, low, c))
    assert low <= min(o, c) <= max(o, c) <= h


def test_prices_sit_on_the_five_paise_grid(api):
    rows = candles(api, "FIVE_MINUTE", "2026-12-01 09:15", "2026-12-01 15:30").data

    assert all(round(price * 100) % 5 == 0 for row in rows for price in row[1:5])


def test_no_candles_on_weekends_or_holidays(api):
    holiday = min(d for d in holidays() if d.weekday() < 5 and d.year == 2026)
    saturday = "2026-11-28"

    on_holiday = candles(api, "ONE_MINUTE", f"{holiday} 09:15", f"{holiday} 15:30")
    on_weekend = candles(api, "ONE_HOUR", f"{saturday} 00:00", "2026-11-29 23:59")

    assert on_holiday.json["status"] is True and on_holiday.data == []
    assert on_weekend.data == []


def test_day_candles_skip_holidays_and_weekends(api):
    rows = candles(api, "ONE_DAY", "2026-01-01 00:00", "2026-01-31 23:59").data

    days = [date.fromisoformat(row[0][:10]) for row in rows]
    assert date(2026, 1, 26) not in days  # Republic Day
    assert all(d.weekday() < 5 for d in days)
    assert rows[0][0] == "2026-01-01T00:00:00+05:30"


@pytest.mark.parametrize("interval,days", [(k, v[1]) for k, v in INTERVALS.items()])
def test_each_interval_refuses_a_range_past_its_day_cap(model, interval, days):
    start = parse_ist("2020-01-01 09:15")
    ok_end = datetime.fromordinal(start.toordinal() + days).replace(tzinfo=IST)
    too_far = datetime.fromordinal(start.toordinal() + days + 1).replace(tzinfo=IST)

    model.candles("3045", interval, start, ok_end, NOW)
    with pytest.raises(CandleRequestError):
        model.candles("3045", interval, start, too_far, NOW)


def test_the_route_answers_an_error_envelope_past_the_cap(api):
    reply = candles(api, "ONE_MINUTE", "2026-10-01 09:15", "2026-11-15 15:30")

    assert reply.status == 200
    assert reply.json["status"] is False and reply.json["data"] is None
    assert reply.json["errorcode"]


def test_a_bad_date_or_interval_is_an_error_envelope(api):
    bad_date = candles(api, "ONE_MINUTE", "01-12-2026 09:15", "2026-12-01 15:30")
    bad_interval = candles(api, "TWO_MINUTE", "2026-12-01 09:15", "2026-12-01 15:30")

    assert bad_date.json["status"] is False
    assert bad_interval.json["status"] is False


def test_candles_are_deterministic_per_seed_and_token(model):
    start, end = parse_ist("2026-11-02 09:15"), parse_ist("2026-11-06 15:30")

    first = model.candles("3045", "FIFTEEN_MINUTE", start, end, NOW)
    again = CandleModel(42, {"3045": 805.0}).candles("3045", "FIFTEEN_MINUTE", start, end, NOW)
    other_seed = CandleModel(7, {"3045": 805.0}).candles("3045", "FIFTEEN_MINUTE", start, end,
                                                         NOW)

    assert first == again
    assert first != other_seed
    assert first != model.candles("2885", "FIFTEEN_MINUTE", start, end, NOW)


def test_coarse_intervals_aggregate_the_minute_path(model):
    start, end = parse_ist("2026-11-02 09:15"), parse_ist("2026-11-02 15:30")

    minutes = model.candles("3045", "ONE_MINUTE", start, end, NOW)
    hours = model.candles("3045", "ONE_HOUR", start, end, NOW)
    (day,) = model.candles("3045", "ONE_DAY", start, end, NOW)

    assert [row[0][11:16] for row in hours] == ["09:15", "10:15", "11:15", "12:15", "13:15",
                                                "14:15", "15:15"]
    first_hour = minutes[:60]
    assert hours[0][1:] == [first_hour[0][1], max(r[2] for r in first_hour),
                            min(r[3] for r in first_hour), first_hour[-1][4],
                            sum(r[5] for r in first_hour)]
    assert day[1] == minutes[0][1] and day[4] == minutes[-1][4]
    assert day[5] == sum(r[5] for r in minutes)


def test_no_candles_after_now(model):
    now = datetime(2026, 12, 3, 10, 0, tzinfo=IST)

    rows = model.candles("3045", "ONE_MINUTE", parse_ist("2026-12-03 09:15"),
                         parse_ist("2026-12-03 15:30"), now)

    assert rows[-1][0] == "2026-12-03T10:00:00+05:30"
    assert len(rows) == 46


def test_consecutive_days_join_up(model):
    rows = model.candles("3045", "ONE_DAY", parse_ist("2026-11-02 00:00"),
                         parse_ist("2026-11-30 00:00"), NOW)

    gaps = [abs(b[1] - a[4]) / a[4] for a, b in zip(rows, rows[1:], strict=False)]
    assert max(gaps) < 0.03
