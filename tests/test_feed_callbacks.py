"""Socket callbacks: a bug in them or an error frame from the server never costs the socket.

The official SDK turns any exception in its data callback into a sleep-and-reconnect and
never reads text frames at all (smartapi.md §5.2, items 5 and 8).
"""

from __future__ import annotations

import logging
import threading

import pytest

from feeds.connection import FeedConnection
from feeds.credentials import SessionCredentials
from feeds.testing import WATCHLIST, fast_config, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def start(connection: FeedConnection) -> threading.Thread:
    thread = threading.Thread(target=connection._run, daemon=True)
    thread.start()
    return thread


def lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_bug_in_the_tick_handler_costs_neither_the_socket_nor_later_ticks(simulator,
                                                                           redis_client,
                                                                           caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    calls, ticks = [], []

    def put(tick) -> None:  # the first 20 ticks hit a bug downstream of the decoder
        calls.append(tick)
        if len(calls) <= 20:
            raise RuntimeError("bug in the tick sink")
        ticks.append(tick)

    connection = FeedConnection(0, fast_config(simulator.ws_url), SessionCredentials(), put)
    connection.subscribe(2, WATCHLIST)
    thread = start(connection)

    wait_for(lambda: len(ticks) > 25, 10, "ticks after the failing ones")
    connection.stop()
    thread.join(5)

    assert connection.opens == 1
    assert len(lines(caplog, "tick handler failed: RuntimeError('bug in the tick sink')")) == 1
    assert not lines(caplog, "lost after")


def test_an_error_frame_from_the_server_is_surfaced_and_the_socket_stays(simulator,
                                                                        redis_client, caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    ticks: list = []
    connection = FeedConnection(0, fast_config(simulator.ws_url), SessionCredentials(),
                                ticks.append)
    connection.subscribe(2, WATCHLIST)
    thread = start(connection)
    wait_for(lambda: ticks, 10, "first tick")

    connection._send(['{"correlationID": "bad1", "action": 1, "params": "nonsense"}'])
    wait_for(lambda: lines(caplog, "server error E1001"), 5, "the error frame")
    seen = len(ticks)
    wait_for(lambda: len(ticks) > seen + 25, 5, "ticks still flowing")
    connection.stop()
    thread.join(5)

    assert connection.opens == 1
    assert connection.last_error.startswith("E1001 ")
    assert "(request bad1)" in lines(caplog, "server error E1001")[0]
