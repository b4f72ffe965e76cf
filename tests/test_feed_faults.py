"""Every fault the simulator can inject ends with ticks flowing into Redis again."""

from __future__ import annotations

import logging

import pytest

from feeds.testing import make_worker, running_worker, wait_for
from tradebot import keys

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = keys.TICKS_STREAM.format(exchange_type=1)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    return caplog


def messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def said(caplog, text: str) -> bool:
    return any(text in message for message in messages(caplog))


def flowing_again(redis_client, timeout: float = 10.0) -> None:
    """More ticks arrive in the stream than there were when this was called."""
    start = redis_client.xlen(STREAM)
    wait_for(lambda: redis_client.xlen(STREAM) > start + 25, timeout, "ticks flowing again")


def streaming(simulator, redis_client, **config):
    worker = make_worker(simulator.ws_url, **config)
    context = running_worker(worker)
    context.__enter__()
    wait_for(lambda: redis_client.xlen(STREAM) > 25, 10, "first ticks")
    return worker, context


@pytest.fixture
def feed(simulator, redis_client, request):
    config = getattr(request, "param", {})
    worker, context = streaming(simulator, redis_client, **config)
    yield worker
    context.__exit__(None, None, None)


def test_it_reconnects_when_the_server_drops_every_socket(feed, simulator, redis_client, logs):
    simulator.fault("drop_ws")

    wait_for(lambda: feed.connections[0].opens == 2, 5, "reconnect")
    flowing_again(redis_client)
    assert said(logs, "connection 1 lost after")
    assert said(logs, "WebSocket connection attempt 1/10, retrying in 0.")
    assert said(logs, "connection 1 open (reconnect); replayed 50 subscriptions")


def test_a_stalled_but_pinging_socket_is_caught_by_the_data_watchdog(feed, simulator,
                                                                    redis_client, logs):
    simulator.fault("stall", seconds=2.5)

    wait_for(lambda: said(logs, "feed watchdog: no tick for"), 5, "watchdog")
    flowing_again(redis_client)
    assert feed.connections[0].opens >= 2
    assert not said(logs, "no pong")  # the stalled server still answered the pings


@pytest.mark.parametrize("feed", [{"watchdog_seconds": 30.0}], indirect=True)
def test_a_blackholed_socket_is_closed_when_the_pong_does_not_come(feed, simulator,
                                                                  redis_client, logs):
    simulator.fault("blackhole", seconds=2.0)

    wait_for(lambda: said(logs, "no pong"), 5, "pong deadline")
    flowing_again(redis_client)
    assert feed.connections[0].opens >= 2
    assert not said(logs, "feed watchdog")


def test_a_refused_handshake_refreshes_the_session_once_then_reconnects(feed, simulator,
                                                                       redis_client, logs):
    before = simulator.stats()

    simulator.fault("refuse_handshake", seconds=1.0, status=401)
    simulator.fault("drop_ws")

    flowing_again(redis_client)
    after = simulator.stats()
    assert said(logs, "handshake refused: HTTP 401")
    assert said(logs, "refreshing the session before reconnecting")
    assert after["token_refreshes"] - before["token_refreshes"] == 1
    assert after["logins"] == before["logins"]


@pytest.mark.parametrize("feed", [{"connections": 3}], indirect=True)
def test_a_403_on_all_three_connections_costs_one_shared_session_refresh(feed, simulator,
                                                                         redis_client, logs):
    before = simulator.stats()

    simulator.fault("refuse_handshake", seconds=1.0, status=403)
    simulator.fault("drop_ws")

    wait_for(lambda: all(c.opens >= 2 and c.state == "CONNECTED" for c in feed.connections),
             10, "all three connections back")
    flowing_again(redis_client)
    after = simulator.stats()
    refused = {name for name in ("connection 1", "connection 2", "connection 3")
               if said(logs, f"({name}: handshake refused: HTTP 403")}
    assert refused == {"connection 1", "connection 2", "connection 3"}
    assert len([m for m in messages(logs) if "refreshing the session" in m]) == 1
    assert after["token_refreshes"] - before["token_refreshes"] == 1
    assert after["logins"] == before["logins"]


def test_expired_sessions_cost_one_login_then_ticks_flow(feed, simulator, redis_client, logs):
    before = simulator.stats()

    simulator.fault("expire_sessions", drop_streams=True)

    flowing_again(redis_client)
    after = simulator.stats()
    assert said(logs, "handshake refused: HTTP 401")
    assert after["logins"] - before["logins"] == 1
    assert feed.connections[0].opens == 2


def test_bad_frames_are_counted_logged_once_and_skipped(feed, simulator, redis_client, logs):
    simulator.fault("bad_frames", kind="truncated", count=5)
    simulator.fault("bad_frames", kind="unknown_mode", count=5)

    wait_for(lambda: feed.connections[0].bad_frames == 10, 5, "ten bad frames seen")
    flowing_again(redis_client)
    bad_lines = [m for m in messages(logs) if "skipped a bad frame" in m]
    assert len(bad_lines) == 1  # rate-limited: the rest are summed into the next line
    assert feed.connections[0].opens == 1  # a bad frame is no reason to reconnect
    wait_for(lambda: redis_client.hget(keys.FEED_STATE, "bad_frames") == "10", 3, "state")


def test_it_comes_back_after_a_server_restart(feed, simulator, redis_client, logs):
    simulator.restart(down_seconds=0.5)

    flowing_again(redis_client)
    assert said(logs, "connection 1 lost after")
    assert feed.connections[0].opens >= 2
    state = wait_for(
        lambda: (s := redis_client.hgetall(keys.FEED_STATE)).get("reconnects_today") != "0"
        and s, 3, "state with the reconnect counted",
    )
    assert state["state"] == "CONNECTED"
    assert state["subscribed"] == "50" and state["flowing"] == "50"
