"""Redis going away costs the feed neither its socket nor its footing."""

from __future__ import annotations

import logging
import time

import pytest

from feeds.testing import make_worker, running_worker, wait_for
from feeds.worker import redis_client as fast_redis
from feeds.writer import TickWriter
from tradebot import keys

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = keys.TICKS_STREAM.format(exchange_type=1)


def test_it_keeps_the_socket_buffers_counts_drops_and_carries_on(simulator, private_redis,
                                                                caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    writer = TickWriter(lambda: fast_redis(timeout=1.0), buffer_max=40)
    worker = make_worker(simulator.ws_url, writer=writer)
    client = fast_redis(timeout=1.0, url=private_redis.url)

    with running_worker(worker):
        connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
        wait_for(lambda: client.xlen(STREAM) > 25, 10, "first ticks")

        private_redis.kill()
        wait_for(lambda: writer.dropped > 0, 10, "the buffer to overflow")
        assert writer.buffered <= 40 + writer.batch_max
        private_redis.start()
        wait_for(lambda: client.xlen(STREAM) > 25, 10, "ticks in the restarted Redis")
        state = wait_for(lambda: client.hgetall(keys.FEED_STATE), 5, "feed state rewritten")
        time.sleep(1.1)
        state = client.hgetall(keys.FEED_STATE)

    assert connection.opens == 1  # the socket stayed up all along
    assert int(state["dropped"]) == writer.dropped > 0
    assert state["state"] == "CONNECTED"
    text = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Redis unreachable (") and "keeping the socket" in m for m in text)
    assert any(m.startswith("Redis reachable again after") for m in text)
    client.close()
