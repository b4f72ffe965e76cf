"""The engine's periodic duties: square-off, re-bootstrap after a new day or long outage."""

from __future__ import annotations

from datetime import datetime

import pytest

from strategies.bootstrap import trading_day_started
from strategies.engine import Engine
from strategies.models import StrategyConfig
from strategies.risk import RiskGate, RiskLimits
from tradebot import keys
from tradebot.market_hours import IST

THURSDAY = datetime(2026, 12, 3, 15, 21, tzinfo=IST)


@pytest.fixture
def engine(redis_client, db):
    StrategyConfig.objects.filter(name="ema-crossover-demo").update(params={"fast": 3, "slow": 8})
    redis_client.hset(keys.FEED_STATE, "state", "CONNECTED")
    redis_client.set(keys.KILL_SWITCH, "0")
    intents = []
    made = Engine(
        redis_client=redis_client, fetch=lambda *a: [],
        positions=lambda instrument: 7 if instrument.token == "2885" else 0,
        create_intent=lambda *a, **k: intents.append((a, k)),
        risk=RiskGate(redis_client, RiskLimits(), clock_now=lambda: THURSDAY),
    )
    made.start(bootstrap=False)
    made.intents = intents
    yield made
    made.stop()


def test_open_positions_are_squared_off_once_at_the_square_off_time(engine):
    engine.square_off(THURSDAY)
    engine.square_off(THURSDAY)

    ((args, kwargs),) = engine.intents
    assert args[0].token == "2885" and args[1:] == ("SELL", 7)
    assert kwargs["is_exit"] and kwargs["strategy"] == "square-off"


def test_nothing_is_squared_off_before_the_square_off_time(engine):
    engine.square_off(THURSDAY.replace(hour=15, minute=10))

    assert engine.intents == []


def test_a_long_feed_outage_reloads_history_for_the_watchlist(engine):
    base = engine.builder.stream_time_ms + 1000
    engine.builder.add("1:2885", base, 128500, 100, 1, 1)
    engine.builder.add("1:2885", base + 400_000, 128500, 200, 1, 2)  # 400 s of silence

    assert engine._long_outage()
    assert not engine._long_outage()  # one reload per outage
    engine._rebootstrap(THURSDAY)
    assert engine.worker.jobs.qsize() == len(engine.watchlist) == 50


def test_history_is_reloaded_once_at_each_trading_day_open():
    thursday_open = datetime(2026, 12, 3, 9, 15, tzinfo=IST)

    assert trading_day_started(None, thursday_open)
    assert not trading_day_started(thursday_open.date(), thursday_open)
    assert not trading_day_started(None, thursday_open.replace(hour=9, minute=0))
    assert not trading_day_started(None, datetime(2026, 12, 5, 10, 0, tzinfo=IST))  # Saturday
