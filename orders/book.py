"""Reading the broker's order book: status mapping, order rows, and adopting orders.

Angel's order-book rows (smartapi.md §1.6) carry ``status`` / ``orderstatus`` strings;
``our_status`` maps them onto the intent state machine. ``record_order`` creates or
updates the ``Order`` row for a book row or a placeOrder answer; ``apply_row`` also moves
the intent when the broker says something new.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from orders import states
from orders.models import Order, OrderIntent, Status

log = logging.getLogger(__name__)

WORKING_BROKER_STATES = frozenset(
    {"open", "trigger pending", "after market order req received", "modified"}
)


def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def whole(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def rupees(value: Any) -> Decimal | None:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, TypeError, ValueError):
        return None
    return amount if amount > 0 else None


def broker_status(row: dict) -> str:
    return (text(row.get("orderstatus")) or text(row.get("status"))).lower()


def our_status(row: dict) -> str:
    """The intent state a book row means."""
    status = broker_status(row)
    if status == "complete":
        return Status.COMPLETE
    if status == "rejected":
        return Status.REJECTED
    if status == "cancelled":
        return Status.CANCELLED
    if status in WORKING_BROKER_STATES or whole(row.get("filledshares")) > 0:
        return Status.OPEN
    # "open pending", "validation pending", "put order req received", ...: with the OMS.
    return Status.ACCEPTED


def order_fields(row: dict) -> dict[str, Any]:
    """``Order`` fields from a book row (or the subset a placeOrder answer has)."""
    fields: dict[str, Any] = {
        "unique_order_id": text(row.get("uniqueorderid")),
        "ordertag": text(row.get("ordertag")).upper()[:20],
    }
    if "status" in row or "orderstatus" in row:
        fields.update(
            status=our_status(row),
            broker_status=broker_status(row)[:60],
            filled_quantity=whole(row.get("filledshares")),
            average_price=rupees(row.get("averageprice")),
            text=text(row.get("text"))[:500],
        )
    for name, key in (
        ("exchange", "exchange"),
        ("tradingsymbol", "tradingsymbol"),
        ("symboltoken", "symboltoken"),
        ("order_type", "ordertype"),
        ("product_type", "producttype"),
        ("variety", "variety"),
    ):
        if row.get(key):
            fields[name] = text(row.get(key))
    if row.get("transactiontype"):
        fields["side"] = text(row.get("transactiontype")).upper()
    if row.get("quantity") not in (None, ""):
        fields["quantity"] = whole(row.get("quantity"))
    if row.get("price") not in (None, ""):
        fields["price"] = rupees(row.get("price"))
    return {key: value for key, value in fields.items() if value not in ("",)}


def fields_from_intent(intent: OrderIntent) -> dict[str, Any]:
    instrument = intent.instrument
    return {
        "instrument": instrument,
        "exchange": instrument.exchange,
        "tradingsymbol": instrument.symbol,
        "symboltoken": instrument.token,
        "side": intent.side,
        "quantity": intent.quantity,
        "order_type": intent.order_type,
        "price": intent.price,
        "product_type": intent.product_type,
        "variety": intent.variety,
        "ordertag": intent.ordertag or "",
    }


def record_order(intent: OrderIntent | None, orderid: str, row: dict, *, adopted: bool) -> Order:
    """Create or update the ``Order`` for broker order ``orderid``."""
    now = timezone.now()
    values = {**(fields_from_intent(intent) if intent else {}), **order_fields(row)}
    values["updated_at"] = now
    order, created = Order.objects.get_or_create(
        broker_order_id=orderid,
        defaults={**values, "intent": intent, "adopted": adopted, "placed_at": now},
    )
    if not created:
        if intent is not None and order.intent_id is None:
            values["intent"] = intent
        for name, value in values.items():
            setattr(order, name, value)
        order.save()
    return order


def _fill_from_row(order: Order, row: dict) -> None:
    """Record the fill a book row shows (``fillid``, ``averageprice``) right away, so
    positions and P&L need not wait for the trade book; the trade book adds the same
    fill id only once."""
    from orders.models import Fill

    fill_id = text(row.get("fillid"))
    recorded = sum(order.fills.values_list("quantity", flat=True))
    missing = order.filled_quantity - recorded
    if not fill_id or missing <= 0 or order.average_price is None:
        return
    Fill.objects.get_or_create(
        order=order, fill_id=fill_id, defaults={"quantity": missing, "price": order.average_price}
    )


def apply_row(order: Order, row: dict) -> bool:
    """Bring ``order`` (and its intent) up to date with a book or details row.
    Returns whether anything changed."""
    before = (order.status, order.filled_quantity, order.broker_status)
    with transaction.atomic():
        for name, value in order_fields(row).items():
            setattr(order, name, value)
        order.updated_at = timezone.now()
        order.save()
        changed = before != (order.status, order.filled_quantity, order.broker_status)
        if changed:
            _fill_from_row(order, row)
        intent = order.intent
        # A "submitting" intent belongs to its holder, which records the answer itself.
        if intent is not None and intent.status not in (order.status, Status.SUBMITTING):
            target = order.status
            if target in states.ALLOWED.get(intent.status, ()):
                states.move(
                    intent,
                    target,
                    expect=[intent.status],
                    note=f"broker: {order.broker_status or target}",
                    data={"orderid": order.broker_order_id, "filled": order.filled_quantity},
                )
    if changed:
        log.info(
            "order %s: %s -> %s (filled %d)",
            order.broker_order_id,
            before[0],
            order.status,
            order.filled_quantity,
        )
    return changed
