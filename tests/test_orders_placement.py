"""Placing intents in this process against the simulator: the rules of orders.placement.

The fault tests with a real Celery worker are in test_orders_faults.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.test import override_settings

from orders import placement, reconcile, tags
from orders.gateway import WaitFor, gateway
from orders.intents import create_intent
from orders.models import Order, OrderEvent, OrderIntent, Status
from orders.positions import net_quantity, pending_quantity
from orders.testing import instrument, wait_until
from tradebot import keys
from tradebot.models import Activity

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clean(redis_client, simulator):
    from orders import gateway as gateway_module

    gateway_module.reset()
    yield
    redis_client.delete(keys.KILL_SWITCH)


def drive(intent_id: int, timeout: float = 10.0) -> str:
    """What the Celery task does, in this process: place, and wait when told to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return placement.place(intent_id)
        except WaitFor as wait:
            time.sleep(min(wait.seconds, 1.0) + 0.01)
    raise AssertionError("placement did not finish")


def ours(simulator, intent: OrderIntent) -> list[dict]:
    return [row for row in simulator.orders() if row["ordertag"] == intent.ordertag]


def test_the_tag_is_short_deterministic_and_saved_with_the_intent():
    intent = create_intent(instrument(), "BUY", 1, strategy="t", reason="r")

    saved = OrderIntent.objects.get(pk=intent.pk)
    assert saved.ordertag == intent.ordertag == tags.make_tag(saved.pk, saved.created_at)
    assert len(saved.ordertag) <= 19 and saved.ordertag.isalnum()
    assert tags.parse_pk(saved.ordertag) == saved.pk
    assert saved.status == Status.NEW


def test_an_intent_is_sent_once_and_a_second_run_sends_nothing(simulator):
    intent = create_intent(instrument(), "BUY", 1)

    assert drive(intent.pk) == "accepted"
    assert drive(intent.pk) == "done"

    intent.refresh_from_db()
    assert intent.status == Status.ACCEPTED
    assert len(ours(simulator, intent)) == 1
    assert intent.order.broker_order_id == ours(simulator, intent)[0]["orderid"]
    moves = list(
        OrderEvent.objects.filter(intent=intent)
        .exclude(from_status=models_same())
        .values_list("from_status", "to_status")
    )
    assert moves == [("new", "submitting"), ("submitting", "accepted")]


def models_same():
    # Remarks are events without a state change; they are stored with from == to.
    from django.db.models import F

    return F("to_status")


def test_an_intent_past_its_deadline_is_expired_not_sent(simulator):
    intent = create_intent(instrument(), "BUY", 1, deadline_after=0)

    assert drive(intent.pk) == "expired"
    assert ours(simulator, intent) == []


def test_a_rejection_is_final_and_sent_once(simulator):
    from feeds.models import Instrument

    unknown = Instrument.objects.create(symbol="NOPE-EQ", token="999999", exchange="NSE")
    intent = create_intent(unknown, "BUY", 1)

    assert drive(intent.pk) == "rejected"
    assert drive(intent.pk) == "done"

    intent.refresh_from_db()
    assert intent.status == Status.REJECTED and "AB1009" in intent.last_error
    assert simulator.stats()["route_calls"].get("placeOrder") == 1


def test_the_kill_switch_is_checked_after_the_limiter_wait_right_before_the_send(
    simulator, redis_client
):
    limiter = gateway().limiter
    while limiter.try_acquire("orders", "normal") == 0:  # use up this second's budget
        pass
    intent = create_intent(instrument(), "BUY", 1)
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=drive(intent.pk)))

    worker.start()
    time.sleep(0.02)  # it is now waiting for the limiter's window
    redis_client.set(keys.KILL_SWITCH, "1")
    worker.join(10)

    assert result["r"] == "blocked"
    assert OrderIntent.objects.get(pk=intent.pk).status == Status.CANCELLED
    assert ours(simulator, intent) == []


def test_a_lost_answer_is_found_in_the_book_and_adopted_not_resent(simulator):
    simulator.fault("lose_order_response", count=1)
    intent = create_intent(instrument(), "BUY", 1)

    with override_settings(ANGEL_HTTP_TIMEOUT=1.0):
        result = drive(intent.pk)

    intent.refresh_from_db()
    assert result == "adopted"
    assert len(ours(simulator, intent)) == 1
    assert intent.order.adopted
    assert intent.status in (Status.OPEN, Status.COMPLETE, Status.ACCEPTED)


def test_a_5xx_leaves_it_unknown_then_it_is_sent_again_once_not_found(simulator):
    simulator.fault("rest_error", route="placeOrder", kind="5xx", count=1)
    intent = create_intent(instrument(), "BUY", 1)

    assert drive(intent.pk) == "accepted"

    intent.refresh_from_db()
    assert intent.send_count == 2
    assert len(ours(simulator, intent)) == 1
    statuses = list(intent.events.values_list("to_status", flat=True))
    assert "unknown" in statuses


def test_fills_make_the_net_quantity(simulator):
    from orders import actions

    stock = instrument(1)
    intent = create_intent(stock, "BUY", 3)
    assert pending_quantity(stock) == 3
    drive(intent.pk)

    order = Order.objects.get(intent=intent)
    wait_until(lambda: not actions.sync(order.pk), 5, 0.3, "the fill")

    assert net_quantity(stock) == 3
    assert pending_quantity(stock) == 0
    assert [fill.quantity for fill in order.fills.all()] == [3]  # from the book row
    assert OrderIntent.objects.get(pk=intent.pk).status == Status.COMPLETE


def test_the_reconciler_adopts_and_reports_a_tagged_order_the_database_does_not_know(
    simulator,
):
    stock = instrument()
    tag = tags.prefix() + "ZZZZ" + tags.base36(987654)
    gw = gateway()
    gw.call(
        lambda client: client.place_order(
            {
                "variety": "NORMAL",
                "tradingsymbol": stock.symbol,
                "symboltoken": stock.token,
                "transactiontype": "BUY",
                "exchange": "NSE",
                "ordertype": "MARKET",
                "producttype": "INTRADAY",
                "duration": "DAY",
                "price": "0",
                "quantity": 1,
                "ordertag": tag,
            }
        )
    )

    summary = reconcile.reconcile(reason="test", positions=False)

    assert summary["orphans"] == 1
    order = Order.objects.get(ordertag=tag)
    assert order.intent is None and order.adopted and order.instrument == stock
    assert Activity.objects.filter(component="orders", message__contains=tag).exists()


def test_a_new_intent_whose_enqueue_failed_is_enqueued_by_the_reconciler(simulator, redis_client):
    from tradebot.celery import app

    good = app.conf.broker_url
    point_celery_at(app, "redis://127.0.0.1:1/0")  # nothing listens there: Redis is down
    try:
        intent = create_intent(instrument(), "BUY", 1)
    finally:
        point_celery_at(app, good)
    assert OrderIntent.objects.get(pk=intent.pk).status == Status.NEW
    assert redis_client.llen("orders") == 0

    OrderIntent.objects.filter(pk=intent.pk).update(
        status_changed_at=intent.created_at - reconcile_delay()
    )
    summary = reconcile.reconcile(reason="test", positions=False)

    assert summary["requeued"] == 1
    assert redis_client.llen("orders") == 1


def point_celery_at(app, url: str) -> None:
    # New pools for the new URL; kombu keeps the old URL's pools for when it comes back.
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = url


def reconcile_delay():
    from datetime import timedelta

    return timedelta(seconds=reconcile.STALE_NEW_SECONDS + 1)


def test_retry_delays_keep_at_least_half_their_backoff_and_never_reach_zero():
    from orders.tasks import MAX_COUNTDOWN, bounded_jitter, wait_jitter

    for backoff in (0, 1, 2, 4, 8, 1000):
        delays = [bounded_jitter(backoff) for _ in range(200)]
        assert min(delays) >= min(max(backoff, 0.5) / 2, MAX_COUNTDOWN)
        assert max(delays) <= min(max(backoff, 0.5), MAX_COUNTDOWN)
    assert min(wait_jitter(0) for _ in range(200)) > 0
    assert max(wait_jitter(10_000) for _ in range(20)) == MAX_COUNTDOWN


def test_the_order_update_stream_brings_the_fill_without_polling(simulator):
    from orders.updates import OrderUpdateListener

    listener = OrderUpdateListener(simulator.order_ws_url)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        assert listener.connected.wait(5)
        with override_settings(ORDER_FOLLOW_UP=False):  # no polling: only the stream
            intent = create_intent(instrument(2), "BUY", 1)
            drive(intent.pk)

        wait_until(
            lambda: OrderIntent.objects.get(pk=intent.pk).status == Status.COMPLETE,
            5,
            what="the fill from the stream",
        )
        assert Order.objects.get(intent=intent).filled_quantity == 1
    finally:
        listener.stop()
        thread.join(5)


def test_an_unknown_outcome_is_resolved_by_the_order_update_stream(simulator):
    from orders.updates import handle_row

    intent = create_intent(instrument(), "BUY", 1)
    OrderIntent.objects.filter(pk=intent.pk).update(status=Status.UNKNOWN)
    row = {
        "orderid": "X1",
        "ordertag": intent.ordertag,
        "status": "open",
        "orderstatus": "open",
        "transactiontype": "BUY",
        "quantity": "1",
        "filledshares": "0",
        "uniqueorderid": "u-1",
    }

    assert handle_row(row) == "adopted"

    intent.refresh_from_db()
    assert intent.status == Status.OPEN
    assert intent.order.broker_order_id == "X1" and intent.order.adopted


def test_a_working_order_is_modified_then_cancelled_at_the_broker(simulator):
    from orders import actions

    intent = create_intent(instrument(), "BUY", 2, order_type="LIMIT", price="1.00")
    drive(intent.pk)

    assert actions.modify(intent.pk, price="1.50", quantity=3) == "modified"
    row = ours(simulator, intent)[0]
    assert (row["price"], row["quantity"]) == (1.5, "3")

    assert actions.cancel(intent_id=intent.pk, reason="test") == "requested"
    assert ours(simulator, intent)[0]["status"] == "cancelled"
    assert OrderIntent.objects.get(pk=intent.pk).status == Status.CANCELLED
    assert actions.cancel(intent_id=intent.pk) == "done"  # cancelling again is harmless


def test_an_unsent_intent_is_changed_or_cancelled_in_place(simulator):
    from orders import actions

    intent = create_intent(instrument(), "BUY", 1, order_type="LIMIT", price="1.00")

    assert actions.modify(intent.pk, quantity=4) == "updated"
    assert actions.cancel(intent_id=intent.pk) == "cancelled"
    assert drive(intent.pk) == "done"
    assert ours(simulator, intent) == []


def _as_if_sent_and_lost(intent, seconds_ago: float = 2.0) -> None:
    from datetime import timedelta

    from django.utils import timezone

    past = timezone.now() - timedelta(seconds=seconds_ago)
    OrderIntent.objects.filter(pk=intent.pk).update(
        status=Status.UNKNOWN, sent_at=past, settle_until=past, claimed_at=past
    )


def test_the_reconciler_adopts_the_order_of_an_intent_whose_answer_was_lost(simulator):
    stock = instrument()
    intent = create_intent(stock, "BUY", 1)
    gateway().call(
        lambda client: client.place_order(
            {
                "variety": "NORMAL",
                "tradingsymbol": stock.symbol,
                "symboltoken": stock.token,
                "transactiontype": "BUY",
                "exchange": "NSE",
                "ordertype": "MARKET",
                "producttype": "INTRADAY",
                "duration": "DAY",
                "price": "0",
                "quantity": 1,
                "ordertag": intent.ordertag,
            }
        )
    )
    _as_if_sent_and_lost(intent)

    summary = reconcile.reconcile(reason="test", positions=False)

    intent.refresh_from_db()
    assert summary["adopted"] == 1 and summary["orphans"] == 0
    assert intent.status in (Status.OPEN, Status.COMPLETE) and intent.order.adopted


def test_the_reconciler_expires_an_unresolved_intent_the_book_does_not_have(simulator):
    intent = create_intent(instrument(), "BUY", 1, deadline_after=0)
    _as_if_sent_and_lost(intent)

    summary = reconcile.reconcile(reason="test", positions=False)

    assert summary["expired"] == 1
    assert OrderIntent.objects.get(pk=intent.pk).status == Status.EXPIRED
    assert ours(simulator, intent) == []


def test_one_book_read_brings_every_recent_order_up_to_date(simulator):
    from orders import actions

    intents = [create_intent(instrument(i), "BUY", 1) for i in range(3)]
    for intent in intents:
        drive(intent.pk)
    calls = simulator.stats()["route_calls"].get("getOrderBook", 0)

    def settled_now() -> bool:
        try:
            return not actions.refresh_working()
        except WaitFor:  # the 1/s order book budget is taken: the task would come back
            return False

    wait_until(settled_now, 6, 0.3, "the fills")

    assert all(OrderIntent.objects.get(pk=i.pk).status == Status.COMPLETE for i in intents)
    assert simulator.stats()["route_calls"]["getOrderBook"] - calls <= 3


def test_a_kill_switch_engaged_during_a_session_refresh_stops_the_second_send(
    simulator, redis_client, monkeypatch
):
    gw = gateway()
    gw.session.current()  # logged in; the broker then forgets the session
    simulator.fault("expire_sessions")
    refresh = gw.session.invalidate

    def refresh_then_engage(jwt):
        tokens = refresh(jwt)
        redis_client.set(keys.KILL_SWITCH, "1")  # engaged while the refresh ran
        return tokens

    monkeypatch.setattr(gw.session, "invalidate", refresh_then_engage)
    intent = create_intent(instrument(), "BUY", 1)

    assert drive(intent.pk) == "blocked"

    assert OrderIntent.objects.get(pk=intent.pk).status == Status.CANCELLED
    assert simulator.stats()["route_calls"]["placeOrder"] == 1  # only the refused one
    assert ours(simulator, intent) == []


def test_the_reconciler_expires_an_intent_whose_sender_died_and_whose_order_never_landed(
    simulator,
):
    import socket
    import subprocess
    from datetime import timedelta

    from django.utils import timezone

    gone = subprocess.Popen(["true"])
    gone.wait()
    intent = create_intent(instrument(), "BUY", 1, deadline_after=0)
    past = timezone.now() - timedelta(seconds=30)
    OrderIntent.objects.filter(pk=intent.pk).update(
        status=Status.SUBMITTING,
        claim_token="dead",
        claimed_by=f"{socket.gethostname()}:{gone.pid}:1",
        claimed_at=past,
        sent_at=past,
    )

    first = reconcile.reconcile(reason="test", positions=False)
    second = reconcile.reconcile(reason="test", positions=False)

    intent.refresh_from_db()
    assert intent.status == Status.EXPIRED
    assert (first["expired"], first["requeued"], second["requeued"]) == (1, 0, 0)
    notes = list(intent.events.values_list("note", flat=True))
    assert any("gone mid-send" in note for note in notes)
    assert ours(simulator, intent) == []


def test_a_broker_rate_limit_holds_the_shared_limiter_then_sends_once(simulator, monkeypatch):
    gw = gateway()
    gw.session.current()
    logins = simulator.stats()["logins"] + simulator.stats()["token_refreshes"]
    holds = []
    hold = gw.limiter.hold
    monkeypatch.setattr(gw.limiter, "hold", lambda *a: holds.append(a) or hold(*a))
    simulator.fault("rest_error", route="placeOrder", kind="rate_limit", count=1)
    intent = create_intent(instrument(), "BUY", 1)

    assert drive(intent.pk) == "accepted"

    stats = simulator.stats()
    assert holds == [("orders", 1.0)]  # every process waits for it, not just this one
    assert stats["route_calls"]["placeOrder"] == 2
    assert stats["logins"] + stats["token_refreshes"] == logins
    assert len(ours(simulator, intent)) == 1


def test_an_engaged_kill_switch_blocks_a_modify_of_a_working_order(simulator, redis_client):
    from orders import actions

    intent = create_intent(instrument(), "BUY", 1, order_type="LIMIT", price="1.00")
    drive(intent.pk)
    redis_client.set(keys.KILL_SWITCH, "1")

    assert actions.modify(intent.pk, quantity=50) == "blocked"

    assert ours(simulator, intent)[0]["quantity"] == "1"
    assert simulator.stats()["route_calls"].get("modifyOrder", 0) == 0


def test_the_reconciler_says_so_when_an_intent_expires_unsent(simulator):
    intent = create_intent(instrument(), "BUY", 1, deadline_after=0)  # no worker runs here

    summary = reconcile.reconcile(reason="test", positions=False)

    assert summary["expired"] == 1
    alert = Activity.objects.get(component="orders", message__contains=intent.ordertag)
    assert alert.level == "warning" and "expired unsent" in alert.message
    assert ours(simulator, intent) == []
