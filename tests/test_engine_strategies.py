"""The engine from candle to order intent: history first, containment, the gate, intents."""

from __future__ import annotations

import time

import pytest

from feeds.models import Instrument
from orders.models import OrderIntent
from strategies.bootstrap import SymbolResult
from strategies.candles import MINUTE_MS, ClosedCandle, from_ms
from strategies.engine import Engine
from strategies.models import StrategyConfig
from strategies.risk import RiskGate, RiskLimits
from strategies.testing import RecordingStrategy, ensure_watchlist, next_minute_ms, xadd_ticks
from tradebot import keys
from tradebot.models import Activity

TOKEN = "2885"


def minutes_of_ticks(t0: int, minutes: int):
    return [(TOKEN, t0 + i * 15_000 + 500, 128500 + 5 * (i % 5), 1000 + 10 * i, i + 1)
            for i in range(minutes * 4 + 1)]


@pytest.fixture
def setup(redis_client, transactional_db):
    ensure_watchlist()
    Instrument.objects.exclude(token=TOKEN).update(on_watchlist=False)
    StrategyConfig.objects.all().delete()
    RecordingStrategy.seen = []
    redis_client.hset(keys.FEED_STATE, "state", "CONNECTED")
    redis_client.set(keys.KILL_SWITCH, "0")
    engines = []

    def configure(name, **params):
        config = StrategyConfig.objects.create(name=name, kind="recording",
                                               params={"label": name, **params})
        config.instruments.set(Instrument.objects.filter(token=TOKEN))

    def start(fetch=None, bootstrap=False, **kw):
        kw.setdefault("positions", lambda instrument: 0)
        kw.setdefault("risk", RiskGate(redis_client, RiskLimits(always_open=True)))
        engine = Engine(redis_client=redis_client, fetch=fetch or (lambda *a: []), **kw)
        engine.start(bootstrap=bootstrap)
        engines.append(engine)
        return engine

    yield configure, start
    for engine in engines:
        engine.stop()


def pump(engine, until, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.step()
        if until():
            return
    raise AssertionError("condition not reached before the deadline")


def seen_by(label):
    return [(c, live) for c, live, name, _pos in RecordingStrategy.seen if name == label]


def test_strategies_see_history_first_then_live_candles(setup, redis_client):
    configure, start = setup
    configure("recorder")
    now_bucket = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    history_start = now_bucket - 200 * MINUTE_MS

    def fetch(exchange, token, interval, start_dt, end_dt):
        return [[from_ms(history_start + i * MINUTE_MS).isoformat(), 1280.0, 1281.0, 1279.0,
                 1280.5, 100] for i in range(200)]

    engine = start(fetch, bootstrap=True)
    t0 = next_minute_ms()
    xadd_ticks(redis_client, minutes_of_ticks(t0, 2))
    pump(engine, lambda: len(seen_by("recorder")) >= 202)

    seen = seen_by("recorder")
    starts = [c.start_ms for c, _ in seen]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert [live for _, live in seen[:200]] == [False] * 200
    assert all(c.source == "historical" for c, _ in seen[:200])
    assert [(c.start_ms, live) for c, live in seen[200:]] == [(t0, True), (t0 + MINUTE_MS, True)]
    assert redis_client.hget(keys.BOOTSTRAP_STATE, "loaded") == "1"


def test_a_passing_signal_becomes_an_order_intent(setup, redis_client):
    configure, start = setup
    t0 = next_minute_ms()
    configure("buyer", buy_on=[t0])
    engine = start()

    xadd_ticks(redis_client, minutes_of_ticks(t0, 1))
    pump(engine, lambda: OrderIntent.objects.exists())

    intent = OrderIntent.objects.get()
    assert (intent.side, intent.quantity, intent.strategy, intent.is_exit) == (
        "BUY", 1, "buyer", False)
    assert intent.instrument.token == TOKEN and intent.ordertag
    assert "test buy" in intent.reason
    assert Activity.objects.filter(component="engine", message__startswith="buyer: BUY 1 "
                                   "RELIANCE-EQ").exists()


def test_a_refused_signal_creates_no_intent_and_is_recorded(setup, redis_client):
    configure, start = setup
    t0 = next_minute_ms()
    configure("buyer", buy_on=[t0])
    redis_client.set(keys.KILL_SWITCH, "1")
    engine = start()

    xadd_ticks(redis_client, minutes_of_ticks(t0, 1))
    pump(engine, lambda: engine.stats["refused"] == 1)

    assert not OrderIntent.objects.exists()
    assert Activity.objects.filter(component="risk", message__endswith="kill switch engaged"
                                   ).exists()


def test_a_strategy_that_raises_is_paused_and_the_others_go_on(setup, redis_client):
    configure, start = setup
    t0 = next_minute_ms()
    configure("faulty", fail_on=[t0])
    configure("steady")
    engine = start()

    xadd_ticks(redis_client, minutes_of_ticks(t0, 3))
    pump(engine, lambda: len(seen_by("steady")) >= 3)

    faulty = StrategyConfig.objects.get(name="faulty")
    assert faulty.paused and "RuntimeError: strategy bug on" in faulty.paused_reason
    assert len(seen_by("faulty")) == 1
    assert [c.start_ms for c, _ in seen_by("steady")] == [t0, t0 + MINUTE_MS, t0 + 2 * MINUTE_MS]
    error = Activity.objects.get(component="engine", level="error")
    assert error.message.startswith("strategy faulty paused after an error: RuntimeError")
    assert "faulty" not in engine.runners and "steady" in engine.runners


def test_a_strategy_that_raises_on_backfilled_history_is_paused_and_the_others_go_on(
    setup, redis_client
):
    configure, start = setup
    now_bucket = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    history = [ClosedCandle("1:2885", "ONE_MINUTE", now_bucket - (20 - i) * MINUTE_MS,
                            now_bucket - (19 - i) * MINUTE_MS, 128000, 128100, 127900,
                            128050, 100, "historical") for i in range(20)]
    configure("faulty", fail_on=[history[5].start_ms])
    configure("steady")
    engine = start()
    engine.warming["1:2885"] = 0.0  # the symbol was warming up; the backfill answers now

    engine._apply_history(SymbolResult(Instrument.objects.get(token=TOKEN), "1:2885",
                                       state="loaded", candles=history))

    faulty = StrategyConfig.objects.get(name="faulty")
    assert faulty.paused and "RuntimeError: strategy bug on" in faulty.paused_reason
    assert "faulty" not in engine.runners and "steady" in engine.runners
    assert [c.start_ms for c, _ in seen_by("steady")] == [c.start_ms for c in history]
    assert not engine.warming


def test_a_fixed_and_resumed_strategy_is_picked_up_again(setup, redis_client):
    configure, start = setup
    t0 = next_minute_ms()
    configure("faulty", fail_on=[t0])
    engine = start()
    xadd_ticks(redis_client, minutes_of_ticks(t0, 1))
    pump(engine, lambda: StrategyConfig.objects.filter(paused=True).exists())

    config = StrategyConfig.objects.get(name="faulty")
    config.paused, config.paused_reason = False, ""
    config.params = {"label": "faulty"}  # the operator fixed what made it fail
    config.save()
    engine.load_strategies()

    assert "faulty" in engine.runners


def test_strategies_on_five_minute_candles_get_them_aggregated_and_in_order(
    setup, redis_client
):
    from strategies.candles import bucket_start_ms

    configure, start = setup
    configure("five")
    t0 = bucket_start_ms(int(time.time() * 1000) + 5 * MINUTE_MS, 5)
    engine = start(interval="FIVE_MINUTE")

    xadd_ticks(redis_client, minutes_of_ticks(t0, 11))
    pump(engine, lambda: len(seen_by("five")) >= 2)

    first, second = (c for c, _ in seen_by("five"))
    assert (first.interval, first.start_ms, second.start_ms) == (
        "FIVE_MINUTE", t0, t0 + 5 * MINUTE_MS)
    assert first.complete and first.volume == 10 + 10 * 19  # 20 ticks, day-volume deltas
