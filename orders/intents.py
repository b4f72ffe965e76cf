"""Creating order intents: the only way an order starts.

``create_intent`` saves the intent and its tag in one transaction and asks Celery to
place it once that transaction commits. If the message cannot be published (Redis down)
the intent simply stays ``new``: the reconciler finds new intents nobody is working on
and enqueues them again while their deadline allows.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orders.models import OrderIntent, OrderType, Side
from orders.states import remark
from orders.tags import make_tag

log = logging.getLogger(__name__)

# Publishing must fail fast when Redis is down: the order path cannot wait on it and the
# reconciler picks the intent up. (Celery's default policy retries for about a second.)
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.1,
}


def deadline_seconds() -> float:
    return float(getattr(settings, "ORDER_DEADLINE_SECONDS", 30))


def create_intent(
    instrument,
    side: str,
    quantity: int,
    *,
    order_type: str = "MARKET",
    price: Decimal | float | str | None = None,
    strategy: str = "",
    reason: str = "",
    is_exit: bool = False,
    square_off: bool = False,
    product_type: str = "INTRADAY",
    deadline_after: float | None = None,
) -> OrderIntent:
    """Save an order intent with its ordertag and place it after the transaction commits.

    ``price`` is in rupees and only for LIMIT orders. ``is_exit`` sends it through the
    limiter's exit lane. ``square_off`` is for the kill switch's own exits: the only
    intents an engaged kill switch lets through. The intent expires, unsent, when it is
    still unsent ``deadline_after`` seconds (default ORDER_DEADLINE_SECONDS) from now.
    """
    side = str(side).upper()
    order_type = str(order_type).upper()
    if side not in Side.values:
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    if order_type not in OrderType.values:
        raise ValueError(f"order_type must be MARKET or LIMIT, got {order_type!r}")
    if int(quantity) != quantity or quantity <= 0:
        raise ValueError(f"quantity must be a positive whole number, got {quantity!r}")
    if order_type == "LIMIT" and (price is None or Decimal(str(price)) <= 0):
        raise ValueError("a LIMIT order needs a positive price")
    if order_type == "MARKET" and price is not None:
        raise ValueError("a MARKET order takes no price")

    now = timezone.now()
    seconds = deadline_seconds() if deadline_after is None else float(deadline_after)
    with transaction.atomic():
        intent = OrderIntent.objects.create(
            instrument=instrument,
            side=side,
            quantity=int(quantity),
            order_type=order_type,
            price=None if price is None else Decimal(str(price)).quantize(Decimal("0.01")),
            product_type=product_type,
            strategy=strategy[:64],
            reason=reason[:255],
            is_exit=is_exit or square_off,
            square_off=square_off,
            created_at=now,
            status_changed_at=now,
            deadline=now + timedelta(seconds=seconds),
        )
        # The tag is derived from the primary key, so it is written right after the insert,
        # in the same transaction: no intent is ever visible without its tag.
        intent.ordertag = make_tag(intent.pk, intent.created_at)
        OrderIntent.objects.filter(pk=intent.pk).update(ordertag=intent.ordertag)
        remark(intent, f"created by {strategy or 'unknown'}: {reason}"[:500])
        transaction.on_commit(lambda: enqueue_place(intent))
    return intent


def enqueue_place(intent: OrderIntent, countdown: float | None = None) -> bool:
    """Publish ``place_order`` for the intent. False (and a warning) when publishing failed;
    the intent then waits for the reconciler."""
    from orders.tasks import place_order

    # A backstop only: the task itself expires the intent at its deadline and says so.
    expires = intent.deadline + timedelta(seconds=300)
    try:
        place_order.apply_async(
            (intent.pk,),
            countdown=countdown,  # type: ignore[arg-type]  # celery-types: None (no delay) is valid
            expires=expires,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except Exception as exc:  # kombu raises several types when Redis is unreachable
        log.warning(
            "intent %s: could not enqueue place_order (%s: %s); it stays new for the reconciler",
            intent.ordertag,
            type(exc).__name__,
            exc,
        )
        return False
    return True
