"""The one-minute candle builder and larger intervals, on fixed tick series."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from strategies.candles import (
    CandleBuilder,
    IntervalAggregator,
    bucket_start_ms,
    candle_end_ms,
    candle_from_row,
    to_ms,
)
from tradebot.market_hours import IST, NaiveDatetimeError

KEY = "1:2885"
OPEN = datetime(2026, 12, 3, 9, 15, tzinfo=IST)  # a Thursday
T0 = to_ms(OPEN)
S = 1000
M = 60 * S


def ticks_across_three_minutes():
    """(ts, ltp, day volume) - three one-minute candles, the third still open."""
    return [
        (T0 + 1 * S, 128500, 1000),
        (T0 + 20 * S, 128700, 1100),
        (T0 + 40 * S, 128300, 1250),
        (T0 + 59 * S, 128600, 1300),
        (T0 + M + 2 * S, 128650, 1400),
        (T0 + M + 25 * S, 128700, 1420),
        (T0 + M + 45 * S, 128900, 1450),
        (T0 + 2 * M + 1 * S, 129000, 1500),
    ]


def build(ticks, **kw):
    builder = CandleBuilder(covered_since_ms=T0 - 5 * S, **kw)
    for seq, (ts, ltp, vol) in enumerate(ticks, 1):
        builder.add(KEY, ts, ltp, vol, 10, seq)
    return builder


def test_it_builds_one_minute_candles_from_ticks_by_exchange_time():
    builder = build(ticks_across_three_minutes())

    first, second = builder.take_closed()

    assert first.start == OPEN
    assert (first.open, first.high, first.low, first.close) == (128500, 128700, 128300, 128600)
    assert second.start == datetime(2026, 12, 3, 9, 16, tzinfo=IST)
    assert (second.open, second.high, second.low, second.close) == (128650, 128900, 128650, 128900)
    assert first.complete and second.complete
    assert builder.open_candle(KEY).start_ms == T0 + 2 * M


def test_it_takes_volume_from_the_change_in_day_volume():
    builder = build(ticks_across_three_minutes())

    first, second = builder.take_closed()

    # The first tick ever seen only contributes its own traded quantity (10).
    assert first.volume == 10 + (1300 - 1000)
    assert second.volume == 1450 - 1300


def test_processing_the_same_tick_twice_changes_nothing():
    once = build(ticks_across_three_minutes())
    twice = CandleBuilder(covered_since_ms=T0 - 30 * S)
    for seq, (ts, ltp, vol) in enumerate(ticks_across_three_minutes(), 1):
        twice.add(KEY, ts, ltp, vol, 10, seq)
        twice.add(KEY, ts, ltp, vol, 10, seq)

    assert twice.take_closed() == once.take_closed()
    assert twice.duplicates == len(ticks_across_three_minutes())


def test_a_tick_older_than_the_last_one_is_dropped():
    ticks = ticks_across_three_minutes()
    builder = build(ticks[:3])
    builder.add(KEY, T0 + 10 * S, 120000, 1200, 10, 3)  # arrives after the 09:15:40 tick
    for seq, (ts, ltp, vol) in enumerate(ticks[3:], 4):
        builder.add(KEY, ts, ltp, vol, 10, seq)

    first = builder.take_closed()[0]

    assert first.low == 128300
    assert builder.late == 1


def test_a_candle_closes_at_its_end_plus_the_grace_period_without_a_later_tick():
    builder = build(ticks_across_three_minutes()[:4], grace_ms=2000)

    builder.close_due_ms(T0 + M + 1999)
    assert builder.take_closed() == []
    builder.close_due_ms(T0 + M + 2000)

    assert [c.start_ms for c in builder.take_closed()] == [T0]


def test_a_later_tick_of_another_instrument_closes_the_candle_by_stream_time():
    builder = build(ticks_across_three_minutes()[:4], reorder_ms=500)
    builder.add("1:11536", T0 + M + 600, 341000, 50, 5, 1)

    builder.close_due_ms(T0 + M + 600)  # wall clock no later than the stream

    assert [c.key for c in builder.take_closed()] == [KEY]


def test_a_candle_spanning_a_silent_stream_is_marked_incomplete():
    builder = CandleBuilder(covered_since_ms=T0, silence_ms=30_000)
    builder.add(KEY, T0 + 5 * S, 128500, 1000, 10, 1)
    builder.add(KEY, T0 + 50 * S, 128600, 1100, 10, 2)  # 45 s of silence on the whole stream
    builder.add(KEY, T0 + M + 1 * S, 128700, 1200, 10, 3)
    builder.add(KEY, T0 + M + 21 * S, 128700, 1210, 10, 4)
    builder.add(KEY, T0 + M + 41 * S, 128700, 1220, 10, 5)
    builder.add(KEY, T0 + 2 * M + 1 * S, 128800, 1300, 10, 6)

    gapped, after = builder.take_closed()

    assert not gapped.complete
    assert after.complete
    assert builder.gaps == 1


def test_a_candle_closed_by_the_clock_after_the_whole_stream_went_silent_is_incomplete():
    builder = CandleBuilder(covered_since_ms=T0 - 5 * S, silence_ms=30_000)
    builder.add(KEY, T0 + 1 * S, 128500, 1000, 10, 1)
    builder.add(KEY, T0 + 20 * S, 128600, 1100, 10, 2)  # then the feed stops

    builder.close_due_ms(T0 + M + 2 * S)

    (stale,) = builder.take_closed()
    assert stale.close == 128600 and not stale.complete


def test_a_quiet_instrument_on_a_lively_stream_closes_complete_by_the_clock():
    builder = CandleBuilder(covered_since_ms=T0 - 5 * S, silence_ms=30_000)
    builder.add(KEY, T0 + 1 * S, 128500, 1000, 10, 1)
    for i in range(1, 4):  # the stream is alive; KEY does not trade again
        builder.add("1:11536", T0 + i * 15 * S, 341000, 50 + i, 5, i)

    builder.close_due_ms(T0 + M + 2 * S)

    closed = {c.key: c for c in builder.take_closed()}
    assert closed[KEY].complete and closed["1:11536"].complete


def test_a_feed_gap_that_swallowed_whole_minutes_marks_the_next_candle_incomplete():
    builder = CandleBuilder(covered_since_ms=T0 - 5 * S, silence_ms=30_000)
    builder.add(KEY, T0 + 1 * S, 128400, 900, 10, 1)
    builder.add(KEY, T0 + 25 * S, 128450, 950, 10, 2)
    builder.add(KEY, T0 + 50 * S, 128500, 1000, 10, 3)
    builder.close_due_ms(T0 + M + 2 * S)  # the feed went quiet 10 s before the end
    for i in range(4):  # the feed is back at 09:19:01
        builder.add(KEY, T0 + 4 * M + 1 * S + i * 20 * S, 128700 + i, 1300 + i, 10, 4 + i)

    before, after_gap = builder.take_closed()

    assert before.start_ms == T0 and before.complete
    assert after_gap.start_ms == T0 + 4 * M and not after_gap.complete


def test_an_instrument_that_did_not_trade_for_minutes_on_a_lively_stream_stays_complete():
    builder = CandleBuilder(covered_since_ms=T0 - 5 * S, silence_ms=30_000)
    builder.add(KEY, T0 + 1 * S, 128500, 1000, 10, 1)
    for i in range(1, 22):  # another instrument ticks every 15 s; KEY trades at 09:19
        builder.add("1:11536", T0 + i * 15 * S, 341000, 50 + i, 5, i)
        if i in (16, 20):
            builder.add(KEY, T0 + i * 15 * S + 1 * S, 128700 + i, 1300 + i, 10, i // 4 - 2)

    mine = [c for c in builder.take_closed() if c.key == KEY]

    assert [c.start_ms for c in mine] == [T0, T0 + 4 * M]
    assert all(c.complete for c in mine)


def test_the_night_between_two_sessions_is_not_a_gap():
    last_minute = to_ms(datetime(2026, 12, 2, 15, 29, tzinfo=IST))  # Wednesday
    builder = CandleBuilder(covered_since_ms=last_minute - 5 * S, session_only=True)
    for i in range(4):
        builder.add(KEY, last_minute + 1 * S + i * 15 * S, 128500, 1000 + i, 10, i + 1)
    for i in range(5):  # Thursday from 09:15:01, a new day volume
        builder.add(KEY, T0 + 1 * S + i * 15 * S, 128600 + i, 50 + i, 10, 5 + i)

    closing, opening = builder.take_closed()

    assert closing.complete
    assert opening.start == OPEN and opening.complete


def test_a_sequence_jump_marks_the_candles_around_the_lost_ticks_incomplete():
    builder = CandleBuilder(covered_since_ms=T0 - 30 * S)
    builder.add(KEY, T0 + 5 * S, 128500, 1000, 10, 1)
    builder.add(KEY, T0 + 50 * S, 128600, 1100, 10, 2)
    builder.add(KEY, T0 + M + 20 * S, 128700, 1200, 10, 7)  # ticks 3 to 6 never arrived
    builder.add(KEY, T0 + 2 * M + 1 * S, 128800, 1300, 10, 8)
    builder.add(KEY, T0 + 2 * M + 21 * S, 128800, 1310, 10, 9)
    builder.add(KEY, T0 + 2 * M + 41 * S, 128800, 1320, 10, 10)
    builder.add(KEY, T0 + 3 * M + 1 * S, 128900, 1400, 10, 11)

    first, second, third = builder.take_closed()

    assert not first.complete and not second.complete
    assert third.complete
    assert builder.sequence_gaps >= 1


def test_the_candle_open_when_the_builder_started_watching_is_incomplete():
    builder = CandleBuilder(covered_since_ms=T0 + 30 * S)
    builder.add(KEY, T0 + 31 * S, 128500, 1000, 10, 1)
    builder.add(KEY, T0 + M + 1 * S, 128600, 1100, 10, 2)

    (first,) = builder.take_closed()

    assert not first.complete


def test_a_naive_datetime_reaching_the_builder_fails():
    builder = build(ticks_across_three_minutes())

    with pytest.raises(NaiveDatetimeError):
        builder.close_due(datetime(2026, 12, 3, 9, 20))
    with pytest.raises(NaiveDatetimeError):
        builder.mark_gap(datetime(2026, 12, 3, 9, 20), datetime(2026, 12, 3, 9, 21))
    with pytest.raises(NaiveDatetimeError):
        candle_from_row(KEY, "ONE_MINUTE", ["2026-12-03T09:15:00", 1, 1, 1, 1, 0])


def test_larger_intervals_are_aligned_to_the_0915_open():
    at_1003 = to_ms(datetime(2026, 12, 3, 10, 3, tzinfo=IST))

    assert bucket_start_ms(at_1003, 5) == to_ms(datetime(2026, 12, 3, 10, 0, tzinfo=IST))
    assert bucket_start_ms(at_1003, 15) == to_ms(datetime(2026, 12, 3, 10, 0, tzinfo=IST))
    assert bucket_start_ms(at_1003, 30) == to_ms(datetime(2026, 12, 3, 9, 45, tzinfo=IST))
    assert bucket_start_ms(at_1003, 60) == to_ms(datetime(2026, 12, 3, 9, 15, tzinfo=IST))
    last_hour = to_ms(datetime(2026, 12, 3, 15, 15, tzinfo=IST))
    assert candle_end_ms(last_hour, 60) == to_ms(datetime(2026, 12, 3, 15, 30, tzinfo=IST))


def test_five_minute_candles_aggregate_the_one_minute_ones():
    ticks = [(T0 + i * 30 * S + S, 128500 + 5 * (i % 7), 1000 + 10 * i) for i in range(24)]
    builder = build(ticks)
    aggregator = IntervalAggregator("FIVE_MINUTE")
    minutes = builder.take_closed()
    for candle in minutes:
        aggregator.add(candle)

    five = aggregator.take_closed()[0]

    inside = [c for c in minutes if c.start_ms < T0 + 5 * M]
    assert five.start == OPEN and five.interval == "FIVE_MINUTE"
    assert five.open == inside[0].open and five.close == inside[-1].close
    assert five.high == max(c.high for c in inside) and five.low == min(c.low for c in inside)
    assert five.volume == sum(c.volume for c in inside)


SCRIPT = r"""
import json, os, time
time.tzset()
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
django.setup()
from datetime import datetime
from strategies.bootstrap import history_windows
from strategies.candles import CandleBuilder, IntervalAggregator, candle_from_row, to_ms
from tradebot.market_hours import IST
t0 = to_ms(datetime(2026, 12, 3, 9, 15, tzinfo=IST))
builder = CandleBuilder(covered_since_ms=t0)
agg = IntervalAggregator("FIFTEEN_MINUTE")
for i in range(3000):
    builder.add("1:2885", t0 + i * 700, 128500 + 5 * ((i * 7919) % 41 - 20), 1000 + 3 * i, 3,
                i + 1)
builder.close_due_ms(t0 + 3000 * 700 + 60000)
out = []
for c in builder.take_closed():
    agg.add(c)
    out.append([c.start.isoformat(), c.open, c.high, c.low, c.close, c.volume, c.complete])
agg.close_due_ms(t0 + 10**9)
out += [[c.start.isoformat(), c.end.isoformat(), c.close] for c in agg.take_closed()]
row = candle_from_row("1:2885", "ONE_MINUTE", ["2026-12-03T10:00:00+05:30", 1, 2, 0.5, 1.5, 9])
out.append([row.start.isoformat(), row.start_ms])
now = datetime(2026, 12, 7, 9, 20, tzinfo=IST)
out.append([[a.isoformat(), b.isoformat()] for a, b in history_windows("ONE_MINUTE", 200, now)])
out.append([[a.isoformat(), b.isoformat()] for a, b in history_windows("ONE_HOUR", 200, now)])
from strategies.bootstrap import trading_day_started
from strategies.risk import RiskGate, RiskLimits
gate = RiskGate(None, RiskLimits())
for hour, minute in ((9, 14), (9, 15), (15, 10), (15, 16), (15, 21), (15, 30)):
    moment = datetime(2026, 12, 3, hour, minute, tzinfo=IST)
    out.append([trading_day_started(None, moment), gate.square_off_due(moment),
                gate._window(moment, False), gate._window(moment, True)])
print(json.dumps(out))
"""


def _run_with_tz(tz: str) -> list:
    env = dict(os.environ, TZ=tz)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_candles_windows_and_schedules_are_identical_under_utc_and_kolkata():
    in_utc = _run_with_tz("UTC")
    in_kolkata = _run_with_tz("Asia/Kolkata")

    assert in_utc == in_kolkata
    assert in_utc[0][0] == "2026-12-03T09:15:00+05:30"
    assert len(in_utc) > 30


def test_the_first_larger_candle_joined_midway_is_incomplete():
    ticks = [(T0 + 2 * M + i * 20 * S + S, 128500, 1000 + i) for i in range(40)]  # from 09:17
    builder = build(ticks)
    aggregator = IntervalAggregator("FIVE_MINUTE")
    for candle in builder.take_closed():
        aggregator.add(candle)

    joined_late, whole = aggregator.take_closed()[:2]

    assert joined_late.start == OPEN and not joined_late.complete
    assert whole.start_ms == T0 + 5 * M and whole.complete
