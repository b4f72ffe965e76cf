"""The risk gate: every refusal, with its reason in the activity feed."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from feeds.models import Instrument
from strategies.base import Signal
from strategies.risk import RiskGate, RiskLimits
from tradebot import keys
from tradebot.market_hours import IST
from tradebot.models import Activity

THURSDAY_1100 = datetime(2026, 12, 3, 11, 0, tzinfo=IST)
BUY = Signal("BUY", 10, "test entry")
SELL_EXIT = Signal("SELL", 10, "test exit", is_exit=True)
PRICE = 128500  # paise


@pytest.fixture
def gate(redis_client, db):
    redis_client.hset(keys.FEED_STATE, "state", "CONNECTED")
    redis_client.set(keys.KILL_SWITCH, "0")
    pnl = [0]

    def make(**limits):
        made = RiskGate(redis_client, RiskLimits(**limits), pnl_paise=lambda: pnl[0],
                        clock_now=lambda: THURSDAY_1100)
        made.pnl = pnl
        return made

    return make


@pytest.fixture
def reliance(db):
    return Instrument.objects.get(token="2885")


def refusals():
    return list(Activity.objects.filter(component="risk").values_list("message", flat=True))


def test_an_entry_inside_every_limit_passes(gate, reliance):
    decision = gate().check(reliance, BUY, 0, PRICE, strategy="ema")

    assert decision.allowed and not decision.is_exit
    assert refusals() == []


def test_the_kill_switch_refuses_everything(gate, reliance, redis_client):
    redis_client.set(keys.KILL_SWITCH, "1")

    entry = gate().check(reliance, BUY, 0, PRICE, strategy="ema")
    exit_ = gate().check(reliance, SELL_EXIT, 10, PRICE, strategy="ema")

    assert not entry.allowed and not exit_.allowed
    assert refusals()[0] == "refused SELL 10 RELIANCE-EQ (ema): kill switch engaged"


def test_an_unhealthy_feed_allows_exits_only(gate, reliance, redis_client):
    redis_client.hset(keys.FEED_STATE, "state", "DEGRADED")

    entry = gate().check(reliance, BUY, 0, PRICE)
    exit_ = gate().check(reliance, SELL_EXIT, 10, PRICE)

    assert not entry.allowed and entry.code == "feed"
    assert exit_.allowed and exit_.is_exit
    assert "feed is DEGRADED: exits only" in refusals()[0]


@pytest.mark.parametrize(
    ("hour", "minute", "why"),
    [
        (15, 16, "no new entries in the last 15 minutes before the close"),
        (15, 21, "after the square-off time 15:20: exits only"),
        (16, 0, "market closed"),
        (9, 10, "market closed"),
    ],
)
def test_the_trading_window_refuses_late_entries(gate, reliance, hour, minute, why):
    moment = THURSDAY_1100.replace(hour=hour, minute=minute)

    decision = gate().check(reliance, BUY, 0, PRICE, now=moment)

    assert not decision.allowed
    assert refusals()[0].endswith(why)


def test_an_exit_still_passes_after_the_square_off_time(gate, reliance):
    late = THURSDAY_1100.replace(hour=15, minute=25)

    assert gate().check(reliance, SELL_EXIT, 10, PRICE, now=late).allowed
    assert gate().square_off_due(late)


def test_the_trading_window_is_open_around_the_clock_in_the_paper_market(gate, reliance):
    saturday_night = datetime(2026, 12, 5, 23, 0, tzinfo=IST)

    assert gate(always_open=True).check(reliance, BUY, 0, PRICE, now=saturday_night).allowed


def test_a_feed_whose_state_stopped_updating_allows_exits_only(gate, reliance, redis_client):
    redis_client.hset(keys.FEED_STATE, mapping={"state": "CONNECTED",
                                               "updated_at": time.time() - 120})

    entry = gate().check(reliance, BUY, 0, PRICE)
    exit_ = gate().check(reliance, SELL_EXIT, 10, PRICE)

    assert not entry.allowed and entry.code == "feed"
    assert exit_.allowed
    assert refusals()[0].endswith("feed is STALE: exits only")


def test_a_freshly_reported_connected_feed_allows_entries(gate, reliance, redis_client):
    redis_client.hset(keys.FEED_STATE, mapping={"state": "CONNECTED",
                                               "updated_at": time.time() - 1})

    assert gate().check(reliance, BUY, 0, PRICE).allowed


def test_an_order_over_the_value_limit_is_refused(gate, reliance):
    decision = gate(max_order_value_rupees=10_000).check(reliance, BUY, 0, PRICE)

    assert not decision.allowed
    assert "order value Rs 12,850 over the limit of Rs 10,000" in refusals()[0]


def test_an_exit_larger_than_the_order_value_limit_still_passes(gate, reliance):
    # Two entries of Rs 96,375 built a position the square-off must close in one order.
    square_off = Signal("SELL", 150, "square-off time", is_exit=True)

    decision = gate(max_order_value_rupees=100_000).check(reliance, square_off, 150, PRICE)

    assert decision.allowed and decision.is_exit
    assert refusals() == []


def test_a_position_over_the_quantity_or_value_limit_is_refused(gate, reliance):
    by_qty = gate(max_position_qty=15).check(reliance, BUY, 10, PRICE)
    by_value = gate(max_position_value_rupees=20_000).check(reliance, BUY, 10, PRICE)

    assert not by_qty.allowed and by_qty.code == "position_qty"
    assert not by_value.allowed and by_value.code == "position_value"
    assert "position would be 20, over the limit of 15" in refusals()[-1]


def test_too_many_orders_in_a_minute_refuses_entries_but_not_exits(gate, reliance):
    limited = gate(max_orders_per_minute=3)
    for _ in range(3):
        limited.note_order()

    entry = limited.check(reliance, BUY, 0, PRICE)
    exit_ = limited.check(reliance, SELL_EXIT, 10, PRICE)

    assert not entry.allowed and exit_.allowed
    assert "3 orders in the last minute (limit 3)" in refusals()[0]


def test_the_daily_loss_limit_stops_new_entries(gate, reliance):
    limited = gate(daily_loss_limit_rupees=5_000)
    limited.pnl[0] = -500_100  # Rs 5,001 lost today

    entry = limited.check(reliance, BUY, 0, PRICE)
    exit_ = limited.check(reliance, SELL_EXIT, 10, PRICE)

    assert not entry.allowed and exit_.allowed
    assert "daily loss Rs 5,001 reached the limit of Rs 5,000" in refusals()[0]


def test_an_exit_that_would_grow_the_position_is_refused(gate, reliance):
    decision = gate().check(reliance, SELL_EXIT, 0, PRICE)

    assert not decision.allowed and decision.code == "bad_exit"


def test_every_refusal_names_the_symbol_strategy_and_reason(gate, reliance, redis_client):
    redis_client.hset(keys.FEED_STATE, "state", "DOWN")

    gate().check(reliance, BUY, 0, PRICE, strategy="orb")

    row = Activity.objects.get(component="risk")
    assert row.level == "warning"
    assert row.data["symbol"] == "RELIANCE-EQ" and row.data["strategy"] == "orb"
    assert row.data["code"] == "feed" and row.data["signal_reason"] == "test entry"
