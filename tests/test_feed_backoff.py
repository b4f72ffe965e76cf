"""Reconnect timing, asserted with a controllable clock instead of real sleeps."""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest

from feeds.backoff import Backoff, BackoffPolicy
from feeds.clock import ManualClock
from feeds.connection import DOWN, FeedConnection
from feeds.credentials import SessionCredentials
from feeds.testing import WATCHLIST, StaticCredentials, fast_config, wait_for
from tradebot.embedded_redis import free_port
from tradebot.models import Activity


def refused_url() -> str:
    return f"ws://127.0.0.1:{free_port()}/smart-stream"  # nothing listens there


def test_the_first_retry_comes_within_250_ms_then_waits_grow_to_the_cap():
    rng = random.Random(7)
    firsts, by_attempt = [], {n: [] for n in range(2, 14)}
    for _ in range(500):
        backoff = Backoff(BackoffPolicy(), rand=rng.random)
        firsts.append(backoff.next_delay())
        for attempt in range(2, 14):
            by_attempt[attempt].append(backoff.next_delay())

    assert 0 < min(firsts) and max(firsts) < 0.25
    for attempt in range(2, 11):  # full jitter: anywhere from 0 to the exponential ceiling
        ceiling = min(30.0, 0.25 * 2 ** (attempt - 2))
        assert max(by_attempt[attempt]) <= ceiling
        assert max(by_attempt[attempt]) > 0.8 * ceiling
        assert min(by_attempt[attempt]) < 0.2 * ceiling
    for attempt in range(11, 14):  # past the fast phase: the cap, every time
        assert set(by_attempt[attempt]) == {30.0}


def test_the_count_resets_only_after_a_healthy_connection():
    backoff = Backoff(BackoffPolicy(healthy_seconds=30.0), rand=lambda: 1.0)
    for _ in range(6):
        backoff.next_delay()

    backoff.connection_lasted(29.0, had_ticks=True)
    backoff.connection_lasted(300.0, had_ticks=False)
    assert backoff.attempt == 6

    backoff.connection_lasted(30.0, had_ticks=True)
    assert backoff.attempt == 0
    assert backoff.next_delay() < 0.25


def attempt_lines(caplog) -> list[str]:
    messages = [record.getMessage() for record in caplog.records]
    return [m for m in messages if m.startswith("WebSocket connection attempt")]


def start_loop(connection: FeedConnection) -> threading.Thread:
    thread = threading.Thread(target=connection._run, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_each_attempt_is_logged_the_tenth_raises_an_alert_and_retries_go_on_at_the_cap(caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    clock = ManualClock()
    connection = FeedConnection(
        0, fast_config(refused_url()), StaticCredentials(), lambda tick: None, clock=clock,
        backoff=Backoff(BackoffPolicy(), rand=lambda: 1.0),
    )

    thread = start_loop(connection)
    wait_for(lambda: len(clock.waits) >= 13, 10, "13 failed attempts")
    connection.stop()
    thread.join(5)

    assert clock.waits[:13] == [0.2, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
                                30.0, 30.0, 30.0]
    lines = attempt_lines(caplog)
    assert lines[1].startswith("WebSocket connection attempt 2/10, retrying in 0.25 s (")
    assert lines[4].startswith("WebSocket connection attempt 5/10, retrying in 2.0 s (")
    assert lines[9].startswith("WebSocket connection attempt 10/10, retrying in 30.0 s")
    assert lines[10].startswith("WebSocket connection attempt 11 (feed DOWN), retrying in 30.0 s")
    assert "refused" in lines[0].lower()
    alerts = Activity.objects.filter(component="feed", level="error")
    assert alerts.count() == 1
    assert "market feed DOWN: 10 connection attempts failed" in alerts.get().message
    assert connection.state in (DOWN, "STOPPED")


@pytest.mark.django_db(transaction=True)
def test_a_closed_market_stops_the_retrying(caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    clock = ManualClock()
    market = {"open": True}
    connection = FeedConnection(
        0, fast_config(refused_url()), StaticCredentials(), lambda tick: None, clock=clock,
        market_open=lambda: market["open"],
    )

    thread = start_loop(connection)
    wait_for(lambda: len(clock.waits) >= 3, 5, "three failed attempts")
    market["open"] = False
    wait_for(lambda: connection.state == "MARKET_CLOSED", 5, "market closed state")
    attempts = connection.attempts_total
    clock.waits.clear()
    wait_for(lambda: len(clock.waits) >= 50, 5, "idle waits")
    connection.stop()
    thread.join(5)

    assert connection.attempts_total == attempts
    assert set(clock.waits) == {1.0}  # idle ticks, not backoff


@pytest.mark.django_db(transaction=True)
def test_after_a_healthy_connection_the_next_drop_is_retried_at_once(simulator, redis_client,
                                                                     caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    clock = ManualClock()
    ticks: list = []
    connection = FeedConnection(0, fast_config(simulator.ws_url), SessionCredentials(),
                                ticks.append, clock=clock)
    connection.subscribe(2, WATCHLIST)
    thread = start_loop(connection)
    wait_for(lambda: ticks, 10, "first tick")
    connection.backoff.attempt = 7  # as if it had taken seven attempts to get here

    clock.advance(connection.config.backoff.healthy_seconds + 0.1)
    simulator.fault("drop_ws")
    wait_for(lambda: connection.opens >= 2, 10, "reconnect")
    connection.stop()
    thread.join(5)

    retry = attempt_lines(caplog)
    assert retry[0].startswith("WebSocket connection attempt 1/10, retrying in 0.")
    assert clock.waits[0] < 0.25


@pytest.mark.django_db(transaction=True)
def test_a_short_lived_connection_keeps_counting(simulator, redis_client, caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    clock = ManualClock()
    ticks: list = []
    connection = FeedConnection(0, fast_config(simulator.ws_url), SessionCredentials(),
                                ticks.append, clock=clock)
    connection.subscribe(2, WATCHLIST)
    thread = start_loop(connection)
    wait_for(lambda: ticks, 10, "first tick")
    connection.backoff.attempt = 7

    simulator.fault("drop_ws")
    wait_for(lambda: connection.opens >= 2, 10, "reconnect")
    connection.stop()
    thread.join(5)

    retry = attempt_lines(caplog)
    assert retry[0].startswith("WebSocket connection attempt 8/10")


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_drops_before_getting_healthy_again_is_down_again(simulator,
                                                                           redis_client,
                                                                           caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    policy = BackoffPolicy(first_max=0.1, base=0.2, cap=5.0, healthy_seconds=60.0)
    ticks: list = []
    connection = FeedConnection(0, fast_config(simulator.ws_url, backoff=policy),
                                SessionCredentials(), ticks.append)
    connection.subscribe(2, WATCHLIST)
    thread = start_loop(connection)
    wait_for(lambda: ticks, 10, "first tick")
    connection.backoff.attempt = 10  # it had been DOWN and has only just come back

    simulator.fault("drop_ws")
    wait_for(lambda: any(line.startswith("WebSocket connection attempt 11 (feed DOWN), "
                                         "retrying in 5.0 s") for line in attempt_lines(caplog)),
             5, "the attempt at the cap")
    connection.watchdog(time.monotonic() + 100.0)  # long silent: must not cut the wait short
    state = connection.state
    connection.stop()
    thread.join(5)

    assert state == DOWN
    assert connection.opens == 1
    assert not any("Closing connection 1" in r.getMessage() for r in caplog.records)
    alert = Activity.objects.get(component="feed", level="error")
    assert "market feed DOWN: 11 connection attempts failed on connection 1" in alert.message
