"""The example strategies on fixed candle series."""

from __future__ import annotations

from datetime import datetime

import pytest

from strategies.base import Signal, strategy_class
from strategies.candles import MINUTE_MS, ClosedCandle, to_ms
from strategies.examples import Ema, EmaCrossover, OpeningRangeBreakout
from tradebot.market_hours import IST

OPEN_MS = to_ms(datetime(2026, 12, 3, 9, 15, tzinfo=IST))


def series(closes, start_ms=OPEN_MS, spread=(0, 0)):
    """One-minute candles with the given closes (rupees); high/low widened by ``spread``."""
    candles = []
    previous = closes[0]
    for i, close in enumerate(closes):
        o, c = int(previous * 100), int(close * 100)
        candles.append(ClosedCandle(
            "1:2885", "ONE_MINUTE", start_ms + i * MINUTE_MS, start_ms + (i + 1) * MINUTE_MS,
            o, max(o, c) + spread[0], min(o, c) - spread[1], c, 1000,
        ))
        previous = close
    return candles


def run(strategy, candles, position=0, follow=True):
    """Feed candles; with ``follow`` the position tracks the signals as if they filled."""
    out = []
    for candle in candles:
        for signal in strategy.feed(candle, position):
            out.append((candle.start_ms, signal))
            if follow:
                position += signal.signed_quantity
    return out


def test_ema_seeds_with_the_simple_average_then_smooths():
    ema = Ema(3)

    assert [ema.update(p) for p in (10, 11, 12)] == [None, None, 11.0]
    assert ema.update(15) == pytest.approx(11 + 0.5 * (15 - 11))


def test_ema_crossover_buys_on_the_cross_up_and_exits_on_the_cross_down():
    falling, rising, falling_again = [100 - i for i in range(10)], [91 + 2 * i for i in range(8)], [
        105 - 3 * i for i in range(6)]
    candles = series(falling + rising + falling_again)
    strategy = EmaCrossover(instrument=None, params={"fast": 3, "slow": 8}, quantity=5)

    signals = run(strategy, candles)

    (buy_at, buy), (sell_at, sell) = signals
    assert (buy.side, buy.quantity, buy.is_exit) == ("BUY", 5, False)
    assert (sell.side, sell.quantity, sell.is_exit) == ("SELL", 5, True)
    assert 10 * MINUTE_MS <= buy_at - OPEN_MS < 18 * MINUTE_MS
    assert sell_at - OPEN_MS >= 18 * MINUTE_MS
    assert "crossed above" in buy.reason


def test_ema_crossover_stays_flat_on_a_cross_down_unless_shorts_are_allowed():
    candles = series([100 + i for i in range(12)] + [110 - 3 * i for i in range(6)])

    long_only = run(EmaCrossover(None, {"fast": 3, "slow": 8}), candles, follow=False)
    shorting = run(EmaCrossover(None, {"fast": 3, "slow": 8, "allow_short": True}), candles,
                   follow=False)

    assert long_only == []
    assert [s.side for _, s in shorting] == ["SELL"]


def test_ema_crossover_refuses_a_fast_period_not_below_the_slow_one():
    with pytest.raises(ValueError):
        EmaCrossover(None, {"fast": 8, "slow": 8})


def opening_range_day(after):
    """15 one-minute candles ranging 100..102, then the closes in ``after``."""
    ranging = [101, 102, 100, 101.5, 101, 100.5, 101, 102, 101, 100, 101, 101.5, 102, 101, 100.5]
    return series(ranging + after, spread=(0, 0))


def test_opening_range_breakout_buys_the_first_close_above_the_range_once():
    candles = opening_range_day([101.5, 102.5, 103, 102.8, 104])
    strategy = OpeningRangeBreakout(None, {"minutes": 15, "target_r": 10})

    signals = run(strategy, candles)

    ((at, buy),) = signals
    assert buy.side == "BUY"
    assert at == OPEN_MS + 16 * MINUTE_MS  # the 09:31 candle closes at 102.50
    assert "above the opening range 100.00-102.00" in buy.reason


def test_opening_range_breakout_stops_out_under_the_range():
    candles = opening_range_day([102.5, 101, 99.5])
    strategy = OpeningRangeBreakout(None, {"minutes": 15})

    sides = [(s.side, s.is_exit) for _, s in run(strategy, candles)]

    assert sides == [("BUY", False), ("SELL", True)]


def test_opening_range_breakout_takes_its_target():
    candles = opening_range_day([102.5, 104, 106.6])
    strategy = OpeningRangeBreakout(None, {"minutes": 15, "target_r": 2.0})

    signals = run(strategy, candles)

    assert [s.side for _, s in signals] == ["BUY", "SELL"]
    assert "target" in signals[1][1].reason


def test_opening_range_breakout_does_not_trade_a_day_it_joined_late():
    late = series([101, 105, 106], start_ms=OPEN_MS + 60 * MINUTE_MS)

    assert run(OpeningRangeBreakout(None, {"minutes": 15}), late) == []


def test_strategies_are_found_by_kind_and_signals_are_validated():
    assert strategy_class("ema_crossover") is EmaCrossover
    assert strategy_class("opening_range_breakout") is OpeningRangeBreakout
    with pytest.raises(ValueError):
        strategy_class("no_such_strategy")
    with pytest.raises(ValueError):
        Signal("HOLD", 1, "not a side")
    with pytest.raises(ValueError):
        Signal("BUY", 0, "nothing")
