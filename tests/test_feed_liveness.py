"""Instruments that go quiet are chased; sequence gaps are counted."""

from __future__ import annotations

import logging

import pytest

from broker.codec import encode_ltp
from feeds.connection import FeedConnection, _Attempt
from feeds.testing import StaticCredentials, fast_config, make_worker, running_worker, wait_for
from tradebot import keys

STREAM = keys.TICKS_STREAM.format(exchange_type=1)


def silently_drop(simulator, key: tuple[int, str]) -> None:
    """The server forgets one subscription without telling the client."""
    def drop():
        for conn in simulator.simulator.streams.market:
            for mode, modes in simulator.simulator.streams.hub.get(key, {}).items():
                modes.discard(conn)
                conn.subs[mode].discard(key)

    simulator._call(drop)


@pytest.mark.django_db(transaction=True)
def test_an_instrument_that_goes_quiet_while_others_flow_is_resubscribed(simulator,
                                                                         redis_client, caplog):
    caplog.set_level(logging.WARNING, logger="feeds")
    worker = make_worker(simulator.ws_url, quiet_seconds=1.5, watchdog_seconds=5.0)

    with running_worker(worker):
        connection = wait_for(lambda: worker.connections and worker.connections[0], 5)
        wait_for(lambda: connection.ticks > 100, 10, "ticks flowing")
        silently_drop(simulator, (1, "3045"))
        mark = redis_client.xadd("probe", {"x": 1})

        wait_for(lambda: any("instruments quiet for 2 s while others flow; resubscribing 3045"
                             in r.getMessage() for r in caplog.records), 8, "the resubscribe")
        wait_for(lambda: "3045" in {f["tk"] for _i, f in redis_client.xrange(STREAM, min=mark)},
                 5, "ticks for the quiet instrument again")

    assert connection.opens == 1  # chased without dropping the whole connection
    assert connection.gaps > 0  # the updates it missed show up as a sequence gap


def test_sequence_gaps_are_counted_per_instrument():
    connection = FeedConnection(0, fast_config("ws://127.0.0.1:9/x"), StaticCredentials(),
                                lambda tick: None)
    connection.subscribe(1, [(1, "3045"), (1, "2885")])
    connection._wanted = connection.registry.keys()
    attempt = _Attempt()

    for token, seq in (("3045", 1), ("3045", 2), ("2885", 7), ("3045", 5), ("2885", 8),
                       ("3045", 5), ("3045", 9)):
        connection._on_data(encode_ltp(1, token, seq, 1_767_000_000_000, 80500), 2, attempt)

    assert connection.gaps == 2 + 3  # 3045 missed 3, 4 and then 6, 7, 8
    assert connection.ticks == 7
