"""run_feed as operators run it: a real process, signals, and the broker's connection limit."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from feeds.models import Instrument
from feeds.testing import make_worker, running_worker, wait_for
from tests.conftest import subprocess_env
from tradebot import keys

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
STREAM = keys.TICKS_STREAM.format(exchange_type=1)


def test_sigterm_stops_a_running_feed_process_within_5_seconds(simulator, redis_client):
    Instrument.objects.update(on_watchlist=False)
    for symbol, token in (("SBIN-EQ", "3045"), ("INFY-EQ", "1594")):
        Instrument.objects.update_or_create(
            exchange="NSE", token=token, defaults={"symbol": symbol, "on_watchlist": True}
        )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_feed"], cwd=ROOT,
        env=subprocess_env(simulator, LOG_LEVEL="INFO"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for(lambda: redis_client.xlen(STREAM) > 3 or process.poll() is not None, 20,
                 "ticks from the feed process")
        assert process.poll() is None, process.stdout.read()

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()

    assert took < 5.0, output
    assert code == 0, output
    assert "Feed starting: 2 instruments" in output
    assert "Feed stopped (SIGTERM)" in output
    assert redis_client.hget(keys.FEED_STATE, "state") == "STOPPED"
    assert {f["tk"] for _id, f in redis_client.xrange(STREAM)} <= {"3045", "1594"}


def test_a_second_feed_process_never_takes_a_fourth_connection(simulator, redis_client,
                                                              caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    first = make_worker(simulator.ws_url, connections=3)
    second = make_worker(simulator.ws_url, connections=1)

    with running_worker(first):
        wait_for(lambda: len(first.connections) == 3
                 and all(c.state == "CONNECTED" for c in first.connections), 10, "3 sockets")
        shards = [c.registry.keys() for c in first.connections]
        with running_worker(second):
            wait_for(lambda: any("Feed cannot start (attempt 1): all 3 connection slots of "
                                 "S0001 are taken" in r.getMessage() for r in caplog.records),
                     5, "the second worker refused a slot")
            stats = simulator.stats()

    assert stats["ws_connections"] == 3
    assert stats["ws_rejected_connections"] == 0
    assert second.connections == []
    assert sorted(len(s) for s in shards) == [16, 17, 17]
    assert set().union(*shards) == first.watchlist and len(first.watchlist) == 50


def test_a_feed_short_of_slots_takes_one_when_it_comes_free(simulator, redis_client, caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    first = make_worker(simulator.ws_url, connections=2)
    second = make_worker(simulator.ws_url, connections=2)

    first_thread = threading.Thread(target=first.run, daemon=True)
    first_thread.start()
    wait_for(lambda: len(first.connections) == 2, 10, "the first worker's 2 connections")
    with running_worker(second):
        try:
            wait_for(lambda: len(second.connections) == 1
                     and second.connections[0].state == "CONNECTED", 10, "the one slot left")
        finally:
            first.request_stop("test")
            first_thread.join(5)
        wait_for(lambda: len(second.connections) == 2
                 and all(c.state == "CONNECTED" for c in second.connections), 8,
                 "the freed slot taken")
        stats = simulator.stats()

    assert stats["ws_connections"] == 2 and stats["ws_rejected_connections"] == 0
    assert any(r.getMessage().startswith("Took connection slot") for r in caplog.records)


def test_a_connection_closed_for_a_lost_slot_keeps_its_reconnects_in_todays_count(
    simulator, redis_client
):
    worker = make_worker(simulator.ws_url, connections=2)
    with running_worker(worker):
        wait_for(lambda: len(worker.connections) == 2
                 and all(c.state == "CONNECTED" for c in worker.connections), 10,
                 "2 connections")
        second = worker.connections[1]
        second.force_reconnect("test")
        wait_for(lambda: second.reconnects == 1 and second.state == "CONNECTED", 10,
                 "the second connection back")
        before = worker.reconnects_today()

        slot_key = keys.FEED_SLOTS.format(client_code=worker.slots.client_code, slot=1)
        redis_client.set(slot_key, "another-process")  # someone else holds slot 2 now
        wait_for(lambda: [c.index for c in worker.connections] == [0, 2], 15,
                 "slot 2's connection closed and the free slot 3 taken instead")

        assert before >= 1
        assert worker.reconnects_today() == before
