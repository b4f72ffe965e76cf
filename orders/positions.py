"""Positions as the bot's own orders make them: filled, and still on the way.

``net_quantity`` counts what was filled today (IST trading day) on orders of the
instrument, buys positive, sells negative: our orders and adopted ones. It follows the
order's filled quantity, which the follow-up task and the reconciler keep current. The
reconciler compares it with the broker's own ``getPosition`` and reports a mismatch.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING

from django.db.models import Case, F, IntegerField, Sum, When

from orders.models import Order, OrderIntent, Side
from orders.states import TERMINAL
from tradebot.market_hours import IST, now_ist

if TYPE_CHECKING:
    from feeds.models import Instrument


def start_of_day(moment: datetime | None = None) -> datetime:
    day = (moment or now_ist()).astimezone(IST).date()
    return datetime.combine(day, time(0, 0), tzinfo=IST)


def _signed(quantity_field: str):
    return Case(
        When(side=Side.BUY, then=F(quantity_field)),
        default=-F(quantity_field),
        output_field=IntegerField(),
    )


def net_quantity(instrument) -> int:
    """Today's filled net quantity of ``instrument`` (long > 0, short < 0)."""
    total = Order.objects.filter(instrument=instrument, placed_at__gte=start_of_day()).aggregate(
        net=Sum(_signed("filled_quantity"))
    )["net"]
    return int(total or 0)


def pending_quantity(instrument) -> int:
    """Signed quantity of intents still on the way (not yet sent, sending, or working and
    unfilled): what ``net_quantity`` becomes if they all fill."""
    pending = 0
    intents = OrderIntent.objects.filter(instrument=instrument).exclude(status__in=TERMINAL)
    for intent in intents.select_related("order"):
        filled = 0
        order = getattr(intent, "order", None)
        if order is not None:
            filled = order.filled_quantity
        sign = 1 if intent.side == Side.BUY else -1
        pending += sign * max(intent.quantity - filled, 0)
    return pending


def exposure(instrument) -> int:
    """Filled plus pending: the position if everything on the way fills."""
    return net_quantity(instrument) + pending_quantity(instrument)


def open_instruments() -> list[tuple[Instrument, int]]:
    """(instrument, net quantity) for every instrument with a non-zero net today."""
    rows = (
        Order.objects.filter(placed_at__gte=start_of_day(), instrument__isnull=False)
        .values("instrument")
        .annotate(net=Sum(_signed("filled_quantity")))
    )
    from feeds.models import Instrument

    found: list[tuple[Instrument, int]] = []
    for row in rows:
        if row["net"]:
            found.append((Instrument.objects.get(pk=row["instrument"]), int(row["net"])))
    return found
