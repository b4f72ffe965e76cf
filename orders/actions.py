"""Cancel, modify and refresh orders. Unlike placing, these are safe to repeat.

A cancel or modify sets an absolute state (cancelled; price P, quantity Q), so after an
unknown outcome the call is simply made again (Celery's transient retry). Intents whose
send is still unresolved are waited for; intents not yet sent are changed in place.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import TypedDict

from django.utils import timezone

from broker.errors import AmbiguousError, RateLimitedError, RejectedError, TransientError
from orders import book, states
from orders.gateway import WaitFor, gateway
from orders.models import Order, OrderIntent, Status
from orders.placement import INLINE_WAIT, RESOLVE_GRACE, kill_blocks, load
from tradebot.state import record

log = logging.getLogger(__name__)

S = Status
UNRESOLVED = (S.SUBMITTING, S.UNKNOWN)


def _wait_for_outcome(intent: OrderIntent, what: str) -> None:
    if timezone.now() > intent.deadline + timedelta(seconds=RESOLVE_GRACE):
        raise LookupError(f"intent {intent.ordertag} still unresolved; {what} left")
    raise WaitFor(1.0, f"waiting for {intent.ordertag}'s send to resolve before {what}")


# --- cancel ---------------------------------------------------------------------------


def cancel(*, intent_id: int | None = None, order_pk: int | None = None, reason: str = "") -> str:
    if intent_id is not None:
        intent = load(intent_id)
        if intent is None:
            return "missing"
        if intent.status == S.NEW:
            if states.move(
                intent, S.CANCELLED, expect=[S.NEW], note=f"cancelled before it was sent: {reason}"
            ):
                return "cancelled"
            intent = load(intent_id)
            if intent is None:
                return "missing"
        if intent.status in states.TERMINAL:
            return "done"
        if intent.status in UNRESOLVED:
            try:
                _wait_for_outcome(intent, "cancelling")
            except LookupError as exc:
                log.warning("%s", exc)
                return "left"
        order = Order.objects.filter(intent=intent).first()
        if order is None:
            return "no order"
    else:
        if order_pk is None:
            return "missing"
        order = Order.objects.select_related("intent").filter(pk=order_pk).first()
        if order is None:
            return "missing"
    return _cancel_order(order, reason)


def _cancel_order(order: Order, reason: str) -> str:
    if not order.is_working:
        return "done"
    gw = gateway()
    gw.take_slot("cancelOrder", "cancel", budget=INLINE_WAIT)
    try:
        gw.call(
            lambda client: client.cancel_order(order.variety or "NORMAL", order.broker_order_id),
            route="cancelOrder",
            priority="cancel",
        )
    except RejectedError as exc:
        # Usually "already complete / cancelled": the broker's book says which.
        log.info("order %s: cancel refused (%s); reading its state", order.broker_order_id, exc)
        states.remark(order.intent, f"cancel refused: {exc}", order=order)
        _sync_quietly(order)
        return "refused"
    except AmbiguousError as exc:
        raise TransientError(
            f"cancel outcome unknown ({exc}); cancelling again", route="cancelOrder"
        ) from exc
    except RateLimitedError as exc:
        raise WaitFor(exc.retry_after, "broker rate limit on cancel") from exc
    order.cancel_requested_at = timezone.now()
    order.save(update_fields=["cancel_requested_at"])
    states.remark(order.intent, f"cancel requested: {reason}", order=order)
    _sync_quietly(order)
    if order.is_working:
        from orders.tasks import sync_order

        sync_order.apply_async((order.pk,), countdown=1.0)
    return "requested"


# --- modify ---------------------------------------------------------------------------


class _Changes(TypedDict, total=False):
    price: Decimal
    quantity: int
    order_type: str


def modify(
    intent_id: int, *, price=None, quantity: int | None = None, order_type: str | None = None
) -> str:
    intent = load(intent_id)
    if intent is None:
        return "missing"
    changes: _Changes = {}
    if price is not None:
        changes["price"] = Decimal(str(price)).quantize(Decimal("0.01"))
    if quantity is not None:
        if int(quantity) <= 0:
            raise ValueError("quantity must be positive")
        changes["quantity"] = int(quantity)
    if order_type is not None:
        changes["order_type"] = str(order_type).upper()
    if not changes:
        return "nothing to change"
    if intent.status == S.NEW:
        if OrderIntent.objects.filter(pk=intent.pk, status=S.NEW).update(**changes):
            states.remark(intent, f"changed before sending: {changes}")
            return "updated"
        intent = load(intent_id)
        if intent is None:
            return "missing"
    if intent.status in states.TERMINAL:
        return "done"
    if intent.status in UNRESOLVED:
        try:
            _wait_for_outcome(intent, "modifying")
        except LookupError:
            return "left"
    order = Order.objects.filter(intent=intent).first()
    if order is None or not order.is_working:
        return "done"
    if kill_blocks(intent):  # it is being cancelled; never make it bigger meanwhile
        states.remark(intent, f"modify not sent, kill switch engaged: {changes}", order=order)
        return "blocked"
    target_type = changes.get("order_type", order.order_type or intent.order_type)
    target_price = changes.get("price", order.price or intent.price)
    target_quantity = changes.get("quantity", order.quantity)
    params = {
        "variety": order.variety or "NORMAL",
        "orderid": order.broker_order_id,
        "ordertype": target_type,
        "producttype": order.product_type or intent.product_type,
        "duration": intent.duration,
        "price": str(target_price) if target_type == "LIMIT" and target_price else "0",
        "quantity": target_quantity,
        "tradingsymbol": order.tradingsymbol,
        "symboltoken": order.symboltoken,
        "exchange": order.exchange,
    }
    lane = "exit" if intent.is_exit else "normal"
    gw = gateway()
    gw.take_slot("modifyOrder", lane, budget=INLINE_WAIT)
    try:
        gw.call(
            lambda client: client.modify_order(params, priority=lane),
            route="modifyOrder",
            priority=lane,
        )
    except RejectedError as exc:
        states.remark(intent, f"modify rejected: {exc}", order=order)
        record(
            "orders",
            f"modify of {order.broker_order_id} rejected: {exc.message}",
            level="warning",
            order=order.pk,
        )
        return "rejected"
    except AmbiguousError as exc:
        raise TransientError(
            f"modify outcome unknown ({exc}); sending the same values again", route="modifyOrder"
        ) from exc
    except RateLimitedError as exc:
        raise WaitFor(exc.retry_after, "broker rate limit on modify") from exc
    order.order_type = target_type
    order.quantity = target_quantity
    order.price = target_price if target_type == "LIMIT" else None
    order.updated_at = timezone.now()
    order.save()
    states.remark(intent, f"modified: {changes}", order=order)
    return "modified"


# --- refresh --------------------------------------------------------------------------


def sync(order_pk: int) -> bool:
    """Read one order's state from the broker; returns whether it is still working."""
    order = Order.objects.select_related("intent").filter(pk=order_pk).first()
    if order is None or not order.is_working:
        return False
    gw = gateway()
    if order.unique_order_id:
        gw.take_slot("orderDetails", "normal", budget=1.0)
        row = gw.call(
            lambda client: client.order_details(order.unique_order_id), route="orderDetails"
        )
    else:
        _, rows = gw.fetch_book()
        found = [r for r in rows if book.text(r.get("orderid")) == order.broker_order_id]
        if not found:
            return True
        row = found[0]
    if isinstance(row, dict) and row:
        book.apply_row(order, row)
    return order.is_working


RECENT_MINUTES = 5


def refresh_working() -> bool:
    """Apply one order book read to the orders accepted in the last few minutes that are
    still working; returns whether any still is. Older ones are the reconciler's."""
    since = timezone.now() - timedelta(minutes=RECENT_MINUTES)
    working = list(
        Order.objects.filter(status__in=(S.ACCEPTED, S.OPEN), placed_at__gte=since).select_related(
            "intent"
        )
    )
    if not working:
        return False
    # No waiting inside the worker for the 1/s book: the task is queued again instead,
    # so order sends never lack a free worker because of a refresh.
    _, rows = gateway().fetch_book(budget=0.0)
    by_id = {book.text(row.get("orderid")): row for row in rows}
    for order in working:
        row = by_id.get(order.broker_order_id)
        if row is not None:
            book.apply_row(order, row)
    return any(order.is_working for order in working)


YOUNG_SECONDS = 15


def next_refresh_delay(step: int) -> float | None:
    """Seconds until the next refresh: 1 while a working order is young, then 2, 4 ... 30;
    ``None`` when no recent order is working."""
    since = timezone.now() - timedelta(minutes=RECENT_MINUTES)
    youngest = (
        Order.objects.filter(status__in=(S.ACCEPTED, S.OPEN), placed_at__gte=since)
        .order_by("-placed_at")
        .values_list("placed_at", flat=True)
        .first()
    )
    if youngest is None:
        return None
    if (timezone.now() - youngest).total_seconds() < YOUNG_SECONDS:
        return 1.0
    return min(2.0 ** (step + 1), 30.0)


def _sync_quietly(order: Order) -> None:
    try:
        sync(order.pk)
        order.refresh_from_db()
    except Exception as exc:  # the follow-up task or the reconciler catches up
        log.info("order %s: state not refreshed now (%s)", order.broker_order_id, exc)
