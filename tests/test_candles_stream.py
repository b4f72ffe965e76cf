"""Candles from the real tick stream: consumer group recovery, dedupe, gaps and repairs."""

from __future__ import annotations

import time

import pytest
import redis

from strategies.candles import MINUTE_MS
from strategies.engine import Engine
from strategies.models import Candle, StrategyConfig
from strategies.risk import RiskGate, RiskLimits
from strategies.store import read_recent
from strategies.testing import RecordingStrategy, next_minute_ms, xadd_ticks
from strategies.ticks import TickReader, block_ms_for
from tradebot import keys
from tradebot.models import Activity

TOKEN = "2885"  # RELIANCE-EQ, on the seeded watchlist
KEY = "1:2885"
STREAM = keys.TICKS_STREAM.format(exchange_type=1)
S = 1000


def minute_of_ticks(t0: int, first_seq: int, base: int = 128500, per_minute: int = 4):
    """(token, ts, ltp, vol, seq) ticks spread over the minute starting at t0."""
    step = MINUTE_MS // per_minute
    return [
        (TOKEN, t0 + 500 + i * step, base + 5 * i, 1000 + 100 * (first_seq + i), first_seq + i)
        for i in range(per_minute)
    ]


@pytest.fixture
def recording(db):
    StrategyConfig.objects.update(enabled=False)
    RecordingStrategy.seen = []

    def configure(**params):
        from feeds.models import Instrument

        config = StrategyConfig.objects.create(name="recorder", kind="recording", params=params)
        config.instruments.set(Instrument.objects.filter(token=TOKEN))
        return config

    return configure


@pytest.fixture
def make_engine(redis_client, db):
    redis_client.hset(keys.FEED_STATE, "state", "CONNECTED")
    engines = []

    def make(fetch=None, **kw):
        kw.setdefault("positions", lambda instrument: 0)
        kw.setdefault("create_intent", lambda *a, **k: None)
        kw.setdefault("risk", RiskGate(redis_client, RiskLimits(always_open=True)))
        engine = Engine(redis_client=redis_client, fetch=fetch or (lambda *a: []), **kw)
        engine.start(bootstrap=False)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def pump(engine: Engine, until, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.step()
        if until():
            return
    raise AssertionError("condition not reached before the deadline")


def stored(start_ms: int):
    return Candle.objects.filter(instrument__token=TOKEN, interval="ONE_MINUTE",
                                 start__gte=_dt(start_ms)).order_by("start")


def _dt(ms):
    from strategies.candles import from_ms

    return from_ms(ms)


def test_stream_ticks_become_candles_in_the_database_and_redis(make_engine, redis_client):
    engine = make_engine()
    t0 = next_minute_ms()
    xadd_ticks(redis_client, minute_of_ticks(t0, 1) + minute_of_ticks(t0 + MINUTE_MS, 5))

    pump(engine, lambda: stored(t0).exists())

    candle = stored(t0).get()
    assert (candle.open, candle.close, candle.source, candle.complete) == (
        128500, 128515, "live", True)
    assert candle.volume == 10 + 300  # first tick's own trade, then day-volume deltas
    assert read_recent(redis_client, "ONE_MINUTE", KEY)[-1][0] == t0


def test_a_tick_written_twice_to_the_stream_changes_nothing(make_engine, redis_client):
    engine = make_engine()
    t0 = next_minute_ms()
    ticks = minute_of_ticks(t0, 1)
    xadd_ticks(redis_client, ticks + ticks + minute_of_ticks(t0 + MINUTE_MS, 5))

    pump(engine, lambda: stored(t0).exists())

    candle = stored(t0).get()
    assert (candle.open, candle.high, candle.close, candle.volume) == (128500, 128515, 128515, 310)
    assert engine.builder.duplicates + engine.builder.late == len(ticks)


def test_the_group_is_recreated_after_the_stream_is_deleted(make_engine, redis_client):
    engine = make_engine()
    t0 = next_minute_ms()
    xadd_ticks(redis_client, minute_of_ticks(t0, 1))
    pump(engine, lambda: engine.stats["ticks"] == 4)

    redis_client.delete(STREAM)
    engine.step()  # NOGROUP: the group is recreated
    xadd_ticks(redis_client, minute_of_ticks(t0 + MINUTE_MS, 5) +
               minute_of_ticks(t0 + 2 * MINUTE_MS, 9))

    pump(engine, lambda: stored(t0).count() == 2)
    assert engine.reader.recreated >= 1
    assert stored(t0).first().complete


def test_a_restarted_engine_settles_its_pending_entries_and_rebuilds_the_open_candle(
    make_engine, redis_client
):
    first = make_engine(consumer="engine@test")
    t0 = next_minute_ms()
    xadd_ticks(redis_client, minute_of_ticks(t0, 1)[:2])
    pump(first, lambda: first.stats["ticks"] == 2)
    xadd_ticks(redis_client, minute_of_ticks(t0, 1)[2:])
    # The engine "crashes" after reading these two entries and before acking them.
    redis_client.xreadgroup("engine", "engine@test", {STREAM: ">"}, count=10)
    first.stop()
    assert redis_client.xpending(STREAM, "engine")["pending"] == 2

    second = make_engine(consumer="engine@test")
    xadd_ticks(redis_client, minute_of_ticks(t0 + MINUTE_MS, 5))
    pump(second, lambda: stored(t0).exists())

    candle = stored(t0).get()
    assert redis_client.xpending(STREAM, "engine")["pending"] == 0
    assert (candle.open, candle.close, candle.volume, candle.complete) == (
        128500, 128515, 310, True)


def test_entries_a_dead_consumer_left_pending_are_claimed(make_engine, redis_client):
    engine = make_engine(consumer="engine@alive")
    engine.reader.claim_idle_ms = 50
    t0 = next_minute_ms()
    xadd_ticks(redis_client, minute_of_ticks(t0, 1))
    redis_client.xreadgroup("engine", "engine@dead", {STREAM: ">"}, count=10)
    time.sleep(0.1)

    engine._claimed_at = 0.0
    engine.housekeeping()

    assert engine.stats["ticks"] == 4
    assert redis_client.xpending(STREAM, "engine")["pending"] == 0


def test_blocking_reads_stay_shorter_than_the_socket_timeout(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=0.4)
    client.xgroup_create("tb:test:quiet", "engine", id="$", mkstream=True)
    reader = TickReader(client, ["tb:test:quiet"], block_ms=5000)

    started = time.monotonic()
    assert reader.read() == []

    assert block_ms_for(client, 5000) == 200
    assert time.monotonic() - started < 0.4


def gapped_series(t0: int):
    """Minute 1 complete, minute 2 loses ticks (sequence 7 -> 12), minute 3 complete."""
    return (minute_of_ticks(t0, 1) + minute_of_ticks(t0 + MINUTE_MS, 5)[:3]
            + minute_of_ticks(t0 + 2 * MINUTE_MS, 12) + minute_of_ticks(t0 + 3 * MINUTE_MS, 16))


def test_a_candle_spanning_a_gap_is_repaired_before_strategies_see_it(
    make_engine, redis_client, recording
):
    recording()
    t0 = next_minute_ms()
    asked = []

    def fetch(exchange, token, interval, start, end):
        asked.append((token, interval, start, end))
        stamp = (t0 + MINUTE_MS) // 1000
        from strategies.candles import from_ms

        return [[from_ms(stamp * 1000).isoformat(), 1286.0, 1290.0, 1280.0, 1288.5, 777]]

    engine = make_engine(fetch)
    xadd_ticks(redis_client, gapped_series(t0))

    pump(engine, lambda: len(RecordingStrategy.seen) >= 3)

    seen = [c for c, *_ in RecordingStrategy.seen]
    assert [c.start_ms for c in seen] == [t0, t0 + MINUTE_MS, t0 + 2 * MINUTE_MS]
    assert seen[1].source == "repaired" and seen[1].close == 128850 and seen[1].volume == 777
    assert all(c.complete for c in seen)
    assert asked[0][1] == "ONE_MINUTE"
    repaired = stored(t0).get(start=_dt(t0 + MINUTE_MS))
    assert (repaired.source, repaired.complete, repaired.close) == ("repaired", True, 128850)


def test_an_unrepairable_candle_is_held_back_and_never_shown(make_engine, redis_client, recording):
    from broker.errors import TransientError

    recording()
    t0 = next_minute_ms()

    def fetch(*args):
        raise TransientError("Something Went Wrong", route="getCandleData", code="AB1004")

    engine = make_engine(fetch, max_hold_ms=300)
    engine.queues["ONE_MINUTE"].retry_ms = 50
    xadd_ticks(redis_client, gapped_series(t0))

    pump(engine, lambda: len(RecordingStrategy.seen) >= 2)

    seen = [c.start_ms for c, *_ in RecordingStrategy.seen]
    assert seen == [t0, t0 + 2 * MINUTE_MS]
    held = stored(t0).get(start=_dt(t0 + MINUTE_MS))
    assert not held.complete
    assert Activity.objects.filter(component="engine", message__contains="held back").exists()


def test_minutes_a_feed_gap_swallowed_come_back_from_history_before_the_next_candle(
    make_engine, redis_client, recording
):
    recording()
    t0 = next_minute_ms()
    asked = []

    def fetch(exchange, token, interval, start, end):
        from strategies.candles import from_ms

        asked.append((_ms(start), _ms(end)))
        return [[from_ms(t0 + m * MINUTE_MS).isoformat(), 1286.0, 1290.0, 1280.0, 1288.0 + m,
                 500 + m] for m in (1, 2, 3)]

    engine = make_engine(fetch)
    before = [(TOKEN, t0 + 500 + i * 19_500, 128500, 1000 + 10 * i, i + 1) for i in range(4)]
    after = [(TOKEN, t0 + 3 * MINUTE_MS + 500 + i * 15 * S, 128600, 2000 + 10 * i, i + 5)
             for i in range(5)]  # the whole stream was silent from :59 to 2 minutes later
    xadd_ticks(redis_client, before + after)

    pump(engine, lambda: len(RecordingStrategy.seen) >= 4)

    seen = [c for c, *_ in RecordingStrategy.seen]
    assert [c.start_ms for c in seen] == [t0 + m * MINUTE_MS for m in range(4)]
    assert [c.source for c in seen] == ["live", "repaired", "repaired", "repaired"]
    assert asked[0] == (t0 + MINUTE_MS, t0 + 3 * MINUTE_MS)


def _ms(moment) -> int:
    return round(moment.timestamp() * 1000)
