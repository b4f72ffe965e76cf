"""Historical bootstrap against the simulator: day caps, rate limits, failures, backfill."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from feeds.models import Instrument
from strategies.bootstrap import DAY_CAPS, Bootstrap, history_windows
from strategies.candles import MINUTE_MS, from_ms, to_ms
from strategies.engine import Engine
from strategies.models import Candle, HistoryStatus, StrategyConfig
from strategies.risk import RiskGate, RiskLimits
from strategies.testing import ensure_watchlist, xadd_ticks
from tradebot import keys
from tradebot.market_hours import IST, is_trading_day

THURSDAY_1030 = datetime(2026, 12, 3, 10, 30, tzinfo=IST)


@pytest.fixture
def watchlist(transactional_db):
    ensure_watchlist()


def test_history_windows_cover_trading_days_only_and_respect_the_day_caps():
    monday_0920 = datetime(2026, 12, 7, 9, 20, tzinfo=IST)

    (only,) = history_windows("ONE_MINUTE", 200, monday_0920)
    many = history_windows("ONE_MINUTE", 375 * 25, monday_0920)

    assert only == (datetime(2026, 12, 4, 9, 15, tzinfo=IST), monday_0920)  # Friday..Monday
    assert len(many) == 2
    for start, end in many:
        assert (end - start) <= timedelta(days=DAY_CAPS["ONE_MINUTE"])
        assert is_trading_day(start.date()) and is_trading_day(end.date())
    assert many[0][0] > many[1][1]  # newest first, not overlapping


def test_history_windows_step_over_a_holiday():
    boxing_day_morning = datetime(2026, 12, 28, 9, 16, tzinfo=IST)  # Monday after Christmas

    (window,) = history_windows("ONE_MINUTE", 200, boxing_day_morning)

    assert window[0].date().isoformat() == "2026-12-24"  # Friday 25th is a holiday


def test_success_with_no_candles_counts_as_a_failure(redis_client, watchlist):
    calls = []

    def empty(*args):
        calls.append(args)
        return []

    boot = Bootstrap(empty, redis_client=redis_client, count=200, backoff=0.01,
                     now=lambda: THURSDAY_1030)
    instrument = Instrument.objects.get(token="2885")

    results = boot.run([instrument])

    assert results["1:2885"].state == "warming_up"
    assert len(calls) == 4  # the first try and three retries
    assert redis_client.hgetall(keys.BOOTSTRAP_STATE)["warming_up"] == "1"


def test_fifty_symbols_load_as_fast_as_the_limit_allows_without_tripping_it(
    redis_client, simulator, watchlist
):
    watchlist = list(Instrument.objects.filter(on_watchlist=True))
    boot = Bootstrap(redis_client=redis_client, count=200)
    seen = []

    started = time.monotonic()
    results = boot.run(watchlist, progress=lambda done, total, r: seen.append(done))
    elapsed = time.monotonic() - started

    assert len(watchlist) == 50
    assert all(r.state == "loaded" and len(r.candles) == 200 for r in results.values())
    assert simulator.stats()["rate_limited"].get("getCandleData", 0) == 0
    assert seen == list(range(1, 51))
    state = redis_client.hgetall(keys.BOOTSTRAP_STATE)
    assert (state["loaded"], state["warming_up"], state["total"]) == ("50", "0", "50")
    assert boot.state.summary() == "historical candles: 50/50 loaded, 0 warming up"
    assert HistoryStatus.objects.filter(state="loaded").count() == 50
    # Paced by the shared limiter (3 calls per 1.1 s): never faster than 16 * 1.1 s. How
    # close to that minimum it gets is a speed figure, measured in bench/bench_engine.py.
    assert elapsed >= 16 * 1.1 - 0.2


# How the simulator fails every getCandleData call of the bootstrap (2 symbols, 4 tries
# each): a fault it injects, or its clock standing before the requested window, so the
# broker answers SUCCESS with no rows, or with fewer rows than asked for.
BOOTSTRAP_FAULTS = {
    "5xx": ("5xx", None, "HTTP 503"),
    "AB1004": ("AB1004", None, "AB1004"),
    "403 rate-limit text": ("rate_limit", None, "exceeding access rate"),
    "empty body": ("empty", None, "empty body"),
    "SUCCESS without rows": (None, datetime(2026, 11, 2, 10, 0, tzinfo=IST),
                             "SUCCESS without candles"),
    "SUCCESS with 31 rows": (None, datetime(2026, 12, 2, 9, 45, tzinfo=IST),
                             "only 31 of 200 candles"),
}


@pytest.mark.parametrize("fault", list(BOOTSTRAP_FAULTS))
def test_a_failed_bootstrap_falls_back_to_live_candles_and_the_backfill_merges_history(
    redis_client, simulator, watchlist, fault
):
    kind, broker_clock, error = BOOTSTRAP_FAULTS[fault]
    StrategyConfig.objects.update(enabled=False)
    Instrument.objects.exclude(token__in=["2885", "11536"]).update(on_watchlist=False)
    redis_client.hset(keys.FEED_STATE, "state", "CONNECTED")
    if kind:
        simulator.fault("rest_error", route="getCandleData", count=8, kind=kind)
    else:
        simulator.set_clock(lambda: broker_clock)
    clock = [THURSDAY_1030]
    engine = Engine(redis_client=redis_client, positions=lambda i: 0,
                    create_intent=lambda *a, **k: None, bootstrap_backoff=0.01,
                    backfill_seconds=0.2, risk=RiskGate(redis_client, RiskLimits()))
    engine.bootstrapper.now = lambda: clock[0]

    engine.start(bootstrap=True)

    state = redis_client.hgetall(keys.BOOTSTRAP_STATE)
    assert (state["loaded"], state["warming_up"], state["total"]) == ("0", "2", "2")
    assert set(engine.warming) == {"1:2885", "1:11536"}
    assert simulator.stats()["route_calls"]["getCandleData"] == 8  # 1 try + 3 retries each
    status = HistoryStatus.objects.get(instrument__token="2885")
    assert (status.state, status.attempts) == ("warming_up", 4)
    assert error in status.last_error
    assert status.next_backfill_at is not None  # the admin shows when it tries again
    simulator.set_clock(lambda: datetime.now(IST))  # the broker has the history again

    # Live candles 10:25 .. 10:33 (nine) from ticks while the symbols warm up.
    engine.builder.watching_since(to_ms(THURSDAY_1030) - 6 * MINUTE_MS)
    t0 = to_ms(THURSDAY_1030) - 5 * MINUTE_MS
    ticks = [(token, t0 + i * 15_000, 128500 + 5 * (i % 9), 1000 + 50 * i, i + 1)
             for i in range(36) for token in ("2885", "11536")]
    xadd_ticks(redis_client, ticks)
    deadline = time.monotonic() + 5
    while engine.stats["candles"] < 16 and time.monotonic() < deadline:
        engine.step()
    live_starts = sorted(to_ms(c.start) for c in Candle.objects.filter(
        instrument__token="2885", source="live", complete=True))
    assert live_starts[0] == t0 and len(live_starts) == 9

    clock[0] = THURSDAY_1030 + timedelta(minutes=4)  # the backfill runs later
    deadline = time.monotonic() + 10
    while engine.warming and time.monotonic() < deadline:
        engine.housekeeping()
        engine.step()

    assert not engine.warming
    state = redis_client.hgetall(keys.BOOTSTRAP_STATE)
    assert (state["loaded"], state["warming_up"]) == ("2", "0")
    assert HistoryStatus.objects.get(instrument__token="2885").next_backfill_at is None
    rows = list(Candle.objects.filter(instrument__token="2885", interval="ONE_MINUTE",
                                      complete=True).order_by("start"))
    starts = [to_ms(r.start) for r in rows]
    assert len(starts) == len(set(starts))  # no duplicates
    today = [s for s in starts if from_ms(s).date() == THURSDAY_1030.date()]
    assert today == list(range(today[0], today[-1] + MINUTE_MS, MINUTE_MS))  # no gaps
    assert today[0] == to_ms(THURSDAY_1030.replace(hour=9, minute=15))
    by_start = {to_ms(r.start): r.source for r in rows}
    assert all(by_start[s] == "live" for s in live_starts)  # live candles kept as they were
    assert by_start[t0 - MINUTE_MS] == "historical"
    engine.stop()
