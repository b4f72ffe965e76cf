"""Every fault, through a real Celery worker process, against the simulator and real Redis:
the simulator's order book ends with exactly one order per intent."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from django.conf import settings

from broker import factory
from orders.intents import create_intent
from orders.models import Order, OrderIntent, Status
from orders.tasks import place_order
from orders.testing import Worker, instrument, settled, wait_until
from simulator.testing import start_simulator
from tests.conftest import subprocess_env
from tradebot import keys, state
from tradebot.celery import app

pytestmark = pytest.mark.django_db(transaction=True)

AT_BROKER = (Status.ACCEPTED, Status.OPEN, Status.COMPLETE)
HTTP_TIMEOUT = "2"  # the worker's read timeout; an unknown outcome settles 1 s after it


@pytest.fixture(scope="module")
def sim():
    running = start_simulator()
    names = ("ANGEL_REST_URL", "ANGEL_WS_URL", "ANGEL_ORDER_WS_URL", "SIMULATOR_PORT")
    saved = {name: getattr(settings, name) for name in names}
    settings.ANGEL_REST_URL = running.rest_url
    settings.ANGEL_WS_URL = running.ws_url
    settings.ANGEL_ORDER_WS_URL = running.order_ws_url
    settings.SIMULATOR_PORT = running.port
    factory.reset()
    # A session another test module's simulator issued would be refused here.
    factory.get_redis().delete(keys.SESSION.format(client_code=settings.ANGEL_CLIENT_CODE))
    yield running
    running.stop()
    for name, value in saved.items():
        setattr(settings, name, value)
    factory.reset()


def _env(sim):
    return subprocess_env(sim, ANGEL_HTTP_TIMEOUT=HTTP_TIMEOUT)


@pytest.fixture(scope="module")
def worker(sim, django_db_setup):
    started = Worker(_env(sim), name="w1").start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def second_worker(sim, worker):
    started = Worker(_env(sim), name="w2", concurrency=2).start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def fresh(sim, worker):
    sim.reset()
    redis = factory.get_redis()
    redis.delete(keys.KILL_SWITCH, "tb:orders:book")
    yield
    redis.delete(keys.KILL_SWITCH)


def book_tags(sim) -> list[str]:
    return [row["ordertag"] for row in sim.orders()]


def assert_one_order_each(sim, intents, *, timeout: float = 20.0) -> None:
    ids = [intent.pk for intent in intents]
    wait_until(
        lambda: settled(ids, AT_BROKER + (Status.REJECTED,)),
        timeout,
        0.05,
        "every intent to reach the broker",
    )
    time.sleep(0.3)  # a late duplicate would land now
    tags = book_tags(sim)
    for intent in OrderIntent.objects.filter(pk__in=ids):
        assert tags.count(intent.ordertag) == 1, (intent.ordertag, tags)
        assert Order.objects.get(intent=intent).broker_order_id in {
            row["orderid"] for row in sim.orders() if row["ordertag"] == intent.ordertag
        }
    assert len(tags) == len(ids)


def test_a_timeout_after_the_broker_accepted_is_adopted_not_resent(sim):
    sim.fault("lose_order_response", count=1, mode="drop")

    intent = create_intent(instrument(), "BUY", 1)

    assert_one_order_each(sim, [intent])
    assert Order.objects.get(intent=intent).adopted


def test_a_5xx_on_place_order_is_searched_then_sent_once(sim):
    sim.fault("rest_error", route="placeOrder", kind="5xx", count=2)

    intents = [create_intent(instrument(i), "BUY", 1) for i in range(2)]

    assert_one_order_each(sim, intents)
    assert sim.stats()["route_calls"]["placeOrder"] == 4


def test_a_403_rate_limit_storm_waits_and_never_logs_in_again(sim):
    sim.fault("rest_error", route="placeOrder", kind="rate_limit", count=4)
    logins = sim.stats()["logins"] + sim.stats()["token_refreshes"]

    intents = [create_intent(instrument(i), "BUY", 1) for i in range(3)]

    assert_one_order_each(sim, intents)
    stats = sim.stats()
    assert stats["route_calls"]["placeOrder"] == 3 + 4
    assert stats["logins"] + stats["token_refreshes"] == logins


def test_an_expired_session_is_refreshed_once_and_the_order_sent_once(sim):
    create_intent(instrument(), "BUY", 1)  # the worker logs in
    wait_until(lambda: len(sim.orders()) == 1, 10, what="the first order")
    sim.fault("expire_sessions")
    before = sim.stats()

    intent = create_intent(instrument(1), "BUY", 1)

    wait_until(lambda: settled([intent.pk], AT_BROKER), 15, what="the second order")
    assert book_tags(sim).count(intent.ordertag) == 1
    assert len(sim.orders()) == 2
    after = sim.stats()
    # One refused send, one new session, one accepted send.
    assert after["route_calls"]["placeOrder"] - before["route_calls"]["placeOrder"] == 2
    renewals = ("logins", "token_refreshes")
    assert sum(after[k] for k in renewals) - sum(before[k] for k in renewals) == 1


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return True
    return False


def test_a_broker_that_is_down_is_retried_with_backoff_and_sent_once(sim, worker):
    down = threading.Thread(target=sim.restart, kwargs={"down_seconds": 1.5})
    down.start()
    wait_until(lambda: _refuses_connections(sim.port), 5, 0.01, "the simulator to go down")

    intent = create_intent(instrument(), "BUY", 1)

    assert_one_order_each(sim, [intent], timeout=20)
    down.join(5)
    assert "retry 1 of 3" in worker.log()


def _kill_mid_send(sim, worker, fault: str, *, whole: bool = False) -> None:
    wait_until(
        lambda: any(e["event"] == "affected" and e["fault"] == fault for e in sim.fault_log()),
        10,
        0.01,
        "the send to start",
    )
    if whole:
        worker.kill()
        return
    assert worker.kill_children(), "no pool process to kill"


def test_a_worker_killed_after_its_order_was_booked_leaves_one_order(sim, worker):
    sim.fault("lose_order_response", count=1, mode="hang", hang_seconds=5)

    intent = create_intent(instrument(), "BUY", 1)
    _kill_mid_send(sim, worker, "lose_order_response")

    assert_one_order_each(sim, [intent], timeout=30)
    notes = " ".join(intent.events.values_list("note", flat=True))
    assert "holder gone" in notes or "gone mid-send" in notes


def test_a_worker_killed_while_its_request_is_in_flight_leaves_one_order(sim, worker):
    # The broker holds the request when the worker dies (the simulator then drops it
    # unbooked); only a book fetched after the send settled may justify sending again.
    sim.fault("rest_error", route="placeOrder", kind="delay", delay_seconds=1.5, count=1)

    intent = create_intent(instrument(), "BUY", 1)
    _kill_mid_send(sim, worker, "rest_error")

    assert_one_order_each(sim, [intent], timeout=30)
    notes = list(intent.events.values_list("note", flat=True))
    assert any("gone" in note for note in notes)
    assert any("sending again" in note for note in notes)


def test_a_message_redelivered_after_the_whole_worker_died_sends_nothing_twice(sim, worker):
    # acks_late: the message stays unacknowledged while the worker sends; kill everything
    # mid-send (no worker-lost handling can run), age the message past the visibility
    # timeout and start the worker again: kombu redelivers it, same task id.
    sim.fault("lose_order_response", count=1, mode="hang", hang_seconds=5)
    redis = factory.get_redis()

    intent = create_intent(instrument(), "BUY", 1)
    _kill_mid_send(sim, worker, "lose_order_response", whole=True)
    unacked = _unacked(redis, "orders.tasks.place_order")
    assert len(unacked) == 1, unacked  # neither acknowledged nor lost
    (task_id,) = unacked.values()
    held = redis.hkeys("unacked")  # with any follow-up the dead worker held
    redis.zadd("unacked_index", {tag: 0 for tag in held})
    worker.start()

    assert_one_order_each(sim, [intent], timeout=30)
    wait_until(
        lambda: f"place_order[{task_id}] received" in worker.log(), 15, what="the redelivery"
    )
    wait_until(lambda: "reconcile_orders[" in worker.log(), 5, what="start-up reconciliation")
    wait_until(
        lambda: not set(held) & set(redis.hkeys("unacked")), 10, what="the acknowledgements"
    )


def _unacked(redis, task: str) -> dict[str, str]:
    """Delivery tag -> task id of the unacknowledged messages of ``task`` (kombu keeps
    them in the ``unacked`` hash until they are acknowledged or restored)."""
    found = {}
    for tag, raw in redis.hgetall("unacked").items():
        headers = json.loads(raw)[0]["headers"]
        if headers["task"] == task:
            found[tag] = headers["id"]
    return found


def test_a_redelivered_task_message_sends_nothing_twice(sim):
    intents = [create_intent(instrument(i), "BUY", 1) for i in range(3)]
    for intent in intents:  # the same message again, as a redelivery brings it
        for _ in range(2):
            place_order.apply_async((intent.pk,), task_id=f"redelivered-{intent.pk}")

    assert_one_order_each(sim, intents)
    assert sim.stats()["route_calls"]["placeOrder"] == 3


def test_two_workers_racing_for_the_same_intents_send_each_once(sim, second_worker):
    intents = [create_intent(instrument(i), "BUY", 1) for i in range(8)]
    for intent in intents:
        place_order.apply_async((intent.pk,))
        place_order.apply_async((intent.pk,))

    assert_one_order_each(sim, intents)
    assert sim.stats()["route_calls"]["placeOrder"] == 8


def test_the_rate_limiter_holds_across_worker_processes(sim, second_worker):
    redis = factory.get_redis()
    redis.delete(keys.LIMIT.format(endpoint="orders", window="log"))
    intents = [create_intent(instrument(i % 50), "BUY", 1) for i in range(20)]

    assert_one_order_each(sim, intents, timeout=30)
    admitted = sorted(
        score / 1e6
        for _, score in redis.zrange(
            keys.LIMIT.format(endpoint="orders", window="log"), 0, -1, withscores=True
        )
    )
    assert len(admitted) >= 20
    busiest = max(sum(1 for t in admitted if start <= t < start + 1.0) for start in admitted)
    assert busiest <= 6  # 8/s less the 2 kept for exits and cancels
    assert sim.stats()["rate_limited"].get("placeOrder", 0) == 0


def test_a_kill_switch_engaged_while_the_task_waits_in_the_queue_stops_it(sim, worker):
    # Every worker stops taking from the queue, so the message waits there.
    workers = len(app.control.ping(timeout=0.5))
    app.control.cancel_consumer("orders", reply=True, timeout=3, limit=workers)
    try:
        intent = create_intent(instrument(), "BUY", 1)
        wait_until(lambda: factory.get_redis().llen("orders") >= 1, 5, what="the message")
        state.engage_kill_switch(by="test", reason="drill")
    finally:
        app.control.add_consumer("orders", reply=True, timeout=3, limit=workers)

    wait_until(lambda: factory.get_redis().llen("orders") == 0, 10, what="the worker")
    wait_until(lambda: "place_order[" in worker.log(), 5, what="the task to run")
    time.sleep(0.5)
    assert OrderIntent.objects.get(pk=intent.pk).status == Status.CANCELLED
    assert sim.orders() == []


def test_engaging_the_kill_switch_cancels_open_orders_at_the_broker(sim):
    stock = instrument()
    intent = create_intent(stock, "BUY", 1, order_type="LIMIT", price="1.00")  # never fills
    wait_until(lambda: settled([intent.pk], AT_BROKER), 10, what="the order")

    state.engage_kill_switch(by="test", reason="drill")

    wait_until(lambda: sim.orders()[0]["status"] == "cancelled", 10, what="the cancel")
    wait_until(lambda: settled([intent.pk], [Status.CANCELLED]), 10, what="the intent")
    assert len(sim.orders()) == 1


def test_a_rejection_is_final_and_never_retried(sim):
    sim.fault("reject_orders", count=1)

    intent = create_intent(instrument(), "BUY", 1)

    wait_until(lambda: settled([intent.pk], [Status.REJECTED]), 10, what="the rejection")
    time.sleep(0.5)
    assert sim.stats()["route_calls"]["placeOrder"] == 1
    assert "RMS" in Order.objects.get(intent=intent).text


def test_the_kill_switch_squares_off_open_positions_when_asked(sim):
    stock = instrument(3)
    entry = create_intent(stock, "BUY", 2)
    wait_until(lambda: settled([entry.pk], [Status.COMPLETE]), 15, what="the entry's fill")
    current = state.bot_state()
    current.square_off_on_kill = True
    current.save()

    state.engage_kill_switch(by="test", reason="square off drill")

    exit_intent = wait_until(
        lambda: OrderIntent.objects.filter(square_off=True, status=Status.COMPLETE).first(),
        20,
        0.1,
        "the square-off exit to fill",
    )
    assert (exit_intent.side, exit_intent.quantity, exit_intent.instrument) == ("SELL", 2, stock)
    sides = sorted(row["transactiontype"] for row in sim.orders())
    assert sides == ["BUY", "SELL"]
    assert create_intent(stock, "BUY", 1).pk  # a new entry is created ...
    wait_until(
        lambda: OrderIntent.objects.filter(
            strategy="", status=Status.CANCELLED, square_off=False
        ).exists(),
        10,
        what="... and stopped by the kill switch",
    )
    assert len(sim.orders()) == 2
