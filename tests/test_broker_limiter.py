"""The Redis rate limiter: shared across processes, multi-window, with priority lanes."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.errors import RateLimitedError, TransientError
from broker.limiter import DEFAULT_LIMITS, RateLimiter, RateLimitTimeout, Window, endpoint_for
from tradebot import keys
from tradebot.embedded_redis import EmbeddedRedis, free_port


def _hammer(url: str, windows: tuple, seconds: float, results) -> None:
    """Child process: take as many slots as it can for ``seconds``."""
    client = redis.Redis.from_url(url, decode_responses=True)
    limiter = RateLimiter(client, {"hammered": windows})
    admitted = 0
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        wait = limiter.try_acquire("hammered")
        if wait == 0.0:
            admitted += 1
        else:
            time.sleep(min(wait, remaining, 0.05))
    results.put(admitted)


def test_two_processes_together_never_exceed_the_limit(redis_url, connection):
    windows = (Window(60, 1.0), Window(100, 60.0))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [
        context.Process(target=_hammer, args=(redis_url, windows, 2.0, results)) for _ in range(2)
    ]

    for worker in workers:
        worker.start()
    counts = [results.get(timeout=20) for _ in workers]
    for worker in workers:
        worker.join(10)

    assert 90 <= sum(counts) <= 100, counts
    assert all(count > 0 for count in counts), counts


def test_the_per_second_window_slides(connection):
    limiter = RateLimiter(connection, {"ltp": (Window(5, 0.5),)})
    admitted = 0
    deadline = time.monotonic() + 1.2

    while time.monotonic() < deadline:
        if limiter.try_acquire("ltp") == 0.0:
            admitted += 1
        else:
            time.sleep(0.01)

    assert 10 <= admitted <= 15


def test_the_per_minute_window_holds_after_the_second_window_frees(connection):
    limiter = RateLimiter(connection, {"candles": (Window(10, 1.0), Window(12, 60.0))})
    admitted = 0
    deadline = time.monotonic() + 1.5

    while time.monotonic() < deadline:
        if limiter.try_acquire("candles") == 0.0:
            admitted += 1
        else:
            time.sleep(0.01)

    assert admitted == 12
    assert 57.0 < limiter.try_acquire("candles") <= 60.0  # until the minute's first call ages


def test_a_refused_call_consumes_nothing_in_any_window(connection):
    limiter = RateLimiter(connection, {"orders": (Window(2, 0.3), Window(3, 60.0))})

    taken = [limiter.try_acquire("orders") for _ in range(10)]
    time.sleep(0.35)
    after_second = [limiter.try_acquire("orders") for _ in range(10)]

    assert taken[:2] == [0.0, 0.0] and all(w > 0 for w in taken[2:])
    assert after_second[0] == 0.0 and all(w > 50 for w in after_second[1:])
    assert connection.zcard(keys.LIMIT.format(endpoint="orders", window="log")) == 3


def test_exits_and_cancels_may_use_the_reserve_new_entries_may_not(connection):
    limiter = RateLimiter(connection, {"orders": (Window(10, 60.0, reserve=3),)})

    normal = [limiter.try_acquire("orders", "normal") for _ in range(8)]
    exits = [limiter.try_acquire("orders", "exit") for _ in range(2)]
    cancel = limiter.try_acquire("orders", "cancel")
    late_normal = limiter.try_acquire("orders", "normal")
    late_exit = limiter.try_acquire("orders", "exit")

    assert normal[:7] == [0.0] * 7 and normal[7] > 0
    assert exits == [0.0, 0.0] and cancel == 0.0
    assert late_normal > 0 and late_exit > 0


def test_acquire_waits_for_the_next_slot(connection):
    limiter = RateLimiter(connection, {"book": (Window(1, 0.3),)})
    limiter.acquire("book")

    started = time.monotonic()
    limiter.acquire("book", timeout=2.0)

    assert 0.25 <= time.monotonic() - started < 1.0


def test_acquire_gives_up_with_a_rate_limit_timeout(connection):
    limiter = RateLimiter(connection, {"book": (Window(1, 30.0),)})
    limiter.acquire("book")

    started = time.monotonic()
    with pytest.raises(RateLimitTimeout) as caught:
        limiter.acquire("book", timeout=0.5)

    assert time.monotonic() - started < 0.2  # the wait is known, so no pointless sleeping
    assert isinstance(caught.value, RateLimitedError)
    assert 29.0 < caught.value.retry_after <= 30.0


def test_it_fails_closed_when_redis_is_unreachable():
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(dead)

    with pytest.raises(TransientError, match="Redis"):
        limiter.try_acquire("orders", "exit")


def test_it_fails_closed_when_redis_dies_midway(tmp_path):
    server = EmbeddedRedis(tmp_path).start()
    client = redis.Redis.from_url(
        server.url, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    limiter = RateLimiter(client)
    assert limiter.try_acquire("orders") == 0.0

    server.kill()

    with pytest.raises(TransientError, match="Redis"):
        limiter.try_acquire("orders")


def test_the_default_table_stays_below_angels_limits():
    orders = {w.seconds: w.limit for w in DEFAULT_LIMITS["orders"]}

    assert orders == {1.0: 8, 60.0: 450, 3600.0: 900}  # Angel: 20/s, 500/min, 1000/h
    assert {w.seconds: w.limit for w in DEFAULT_LIMITS["getCandleData"]}[60.0] < 180
    assert all(w.limit / w.seconds < 1.0 for w in DEFAULT_LIMITS["getOrderBook"])
    assert endpoint_for("cancelOrder") == endpoint_for("placeOrder") == "orders"


def test_an_unknown_priority_is_a_bug(connection):
    with pytest.raises(ValueError, match="priority"):
        RateLimiter(connection).try_acquire("orders", "urgent")


def test_a_hold_stops_every_lane_in_every_process_until_it_lifts(connection):
    limits = {"orders": (Window(10, 1.0, reserve=3),)}
    limiter, other_process = RateLimiter(connection, limits), RateLimiter(connection, limits)

    limiter.hold("orders", 0.3)
    limiter.hold("orders", 0.1)  # a shorter hold never shortens a longer one
    waits = [other_process.try_acquire("orders", lane) for lane in ("normal", "exit", "cancel")]
    time.sleep(0.35)
    after = other_process.try_acquire("orders", "normal")

    assert all(0.15 < wait <= 0.3 for wait in waits), waits
    assert after == 0.0
    assert connection.zcard(keys.LIMIT.format(endpoint="orders", window="log")) == 1
