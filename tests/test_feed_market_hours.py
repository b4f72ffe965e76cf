"""At night nothing connects, logs in, reconnects or raises an alarm."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import pytest

from feeds.testing import make_worker, running_worker, wait_for
from tradebot import keys
from tradebot.market_hours import IST

pytestmark = pytest.mark.django_db(transaction=True)

NIGHT = datetime(2026, 12, 3, 22, 0, tzinfo=IST)  # a Thursday, long after the close
MORNING = datetime(2026, 12, 4, 10, 0, tzinfo=IST)
CLOSE = datetime(2026, 12, 4, 15, 30, 1, tzinfo=IST)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("feeds")]


def test_nothing_connects_or_logs_in_while_the_market_is_closed(simulator, redis_client,
                                                               caplog):
    caplog.set_level(logging.INFO)
    clock = {"now": NIGHT}
    worker = make_worker(simulator.ws_url, now=lambda: clock["now"], always_open=False)

    with running_worker(worker):
        wait_for(lambda: redis_client.hget(keys.FEED_STATE, "state") == "MARKET_CLOSED", 5,
                 "MARKET_CLOSED in the feed state")
        time.sleep(2.5)  # longer than the watchdog, the ping interval and a backoff cycle
        night = simulator.stats()

        clock["now"] = MORNING
        wait_for(lambda: redis_client.xlen(keys.TICKS_STREAM.format(exchange_type=1)) > 0, 10,
                 "ticks once the market opens")
        state = wait_for(lambda: (s := redis_client.hgetall(keys.FEED_STATE))["state"]
                         == "CONNECTED" and s, 3, "CONNECTED in the feed state")

    assert night["ws_connections"] == 0
    assert night["logins"] == 0 and night["token_refreshes"] == 0
    assert worker.connections[0].attempts_total == 1  # the morning's one
    assert state["reconnects_today"] == "0"  # opening for the day is not a reconnect
    assert warnings(caplog) == []


def test_the_close_ends_the_connection_with_no_reconnect_and_no_alarm(simulator, redis_client,
                                                                     caplog):
    caplog.set_level(logging.INFO)
    clock = {"now": MORNING}
    worker = make_worker(simulator.ws_url, now=lambda: clock["now"], always_open=False)

    with running_worker(worker):
        connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
        wait_for(lambda: connection.ticks > 0, 10, "first ticks")
        clock["now"] = CLOSE
        wait_for(lambda: simulator.stats()["ws_connections"] == 0, 5, "socket closed")
        time.sleep(2.5)

        assert connection.attempts_total == 1
        assert connection.state == "MARKET_CLOSED"
        assert redis_client.hget(keys.FEED_STATE, "state") == "MARKET_CLOSED"
    assert warnings(caplog) == []
    assert any("Market closed: feed paused until Mon 07 Dec 09:15 IST" in r.getMessage()
               for r in caplog.records)
