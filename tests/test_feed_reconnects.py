"""Reconnecting over and over leaks nothing and restores exactly the current subscriptions."""

from __future__ import annotations

import logging
import threading
import time

import psutil
import pytest

from feeds.backoff import BackoffPolicy
from feeds.testing import WATCHLIST, make_worker, running_worker, wait_for
from tradebot import keys

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = keys.TICKS_STREAM.format(exchange_type=1)
QUICK = BackoffPolicy(first_max=0.01, base=0.02, cap=0.2, healthy_seconds=60.0)


def server_subscriptions(simulator) -> list[set]:
    """What the simulator itself holds per market connection: (mode, exchange type, token)."""
    def read():
        return [
            {(mode, ex, token) for mode, keys_ in conn.subs.items() for ex, token in keys_}
            for conn in simulator.simulator.streams.market
        ]

    return simulator._call(read)


def reconnect(connection) -> None:
    opens = connection.opens
    connection.force_reconnect("test", reset_backoff=True, log_it=False)
    wait_for(lambda: connection.opens > opens and connection.state == "CONNECTED", 5,
             "the reconnect")


def test_a_hundred_forced_reconnects_leave_fds_and_threads_flat(simulator, redis_client):
    worker = make_worker(simulator.ws_url, backoff=QUICK, ws_ping_interval=0.5,
                         ws_ping_timeout=0.4)
    process = psutil.Process()
    with running_worker(worker):
        connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
        wait_for(lambda: connection.ticks > 0, 10, "first ticks")
        for _ in range(5):  # warm up: pools, caches, the simulator's own sockets
            reconnect(connection)
        time.sleep(0.3)
        fds, threads = process.num_fds(), threading.active_count()

        for _ in range(100):
            reconnect(connection)
        time.sleep(0.3)
        after_fds, after_threads = process.num_fds(), threading.active_count()

        assert connection.opens == 106
        assert after_fds <= fds + 2, (fds, after_fds)
        assert after_threads <= threads, (threads, after_threads)
        start = redis_client.xlen(STREAM)
        wait_for(lambda: redis_client.xlen(STREAM) > start + 25, 5, "ticks after it all")


def test_after_unsubscribing_a_reconnect_replays_exactly_the_current_set(simulator,
                                                                         redis_client):
    worker = make_worker(simulator.ws_url, backoff=QUICK)
    dropped = sorted(WATCHLIST)[:10]
    with running_worker(worker):
        connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
        wait_for(lambda: connection.ticks > 0, 10, "first ticks")

        connection.unsubscribe(dropped)
        connection.subscribe(2, dropped[:1])  # subscribe one again: it must stay
        connection.subscribe(2, sorted(WATCHLIST)[10:])  # duplicates change nothing
        reconnect(connection)
        reconnect(connection)
        mark = redis_client.xadd("probe", {"x": 1})  # a time mark in stream-id form

        expected = {(2, ex, token) for ex, token in (WATCHLIST - set(dropped[1:]))}
        wait_for(lambda: server_subscriptions(simulator) == [expected], 5, "server's set")
        assert len(expected) == 41
        time.sleep(1.0)
        tokens_after = {fields["tk"] for _id, fields in redis_client.xrange(STREAM, min=mark)}
        assert tokens_after and not tokens_after & {token for _ex, token in dropped[1:]}


def test_commands_in_redis_reach_the_running_worker(simulator, redis_client, caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    worker = make_worker(simulator.ws_url, backoff=QUICK)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
    wait_for(lambda: connection.ticks > 0, 10, "first ticks")

    redis_client.xadd(keys.FEED_COMMANDS, {"cmd": "reconnect", "by": "admin"})
    wait_for(lambda: connection.opens == 2, 5, "reconnect on command")
    redis_client.xadd(keys.FEED_COMMANDS, {"cmd": "resubscribe", "by": "health"})
    wait_for(lambda: any("Resubscribed 50 instruments on command from health" in r.getMessage()
                         for r in caplog.records), 5, "resubscribe on command")
    redis_client.xadd(keys.FEED_COMMANDS, {"cmd": "stop", "by": "admin"})
    thread.join(5)

    assert not thread.is_alive()
    assert redis_client.hget(keys.FEED_STATE, "state") == "STOPPED"
    assert worker.stop_reason == "stop command from admin"


def test_the_kill_switch_stops_the_feed_when_so_configured(simulator, redis_client):
    worker = make_worker(simulator.ws_url, stop_on_kill_switch=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
    wait_for(lambda: connection.ticks > 0, 10, "first ticks")

    redis_client.set(keys.KILL_SWITCH, "1")  # the mirror the kill switch writes
    thread.join(5)

    assert not thread.is_alive()
    assert worker.stop_reason == "kill switch"
    assert simulator.stats()["ws_connections"] == 0
