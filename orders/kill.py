"""What the orders module does when the kill switch engages.

``tradebot.state.engage_kill_switch`` records who/when/why, sets the Redis mirror that
every send checks right before it goes out, and then calls ``on_kill_switch``, which:

1. cancels every intent not yet sent (their queued tasks then find them cancelled);
2. cancels every working order at the broker through the orders queue, in the limiter's
   "cancel" lane (inline, right here, if the queue cannot be reached); intents whose
   send is in flight are cancelled as soon as their outcome is known;
3. optionally squares off open positions, once the cancels are through, with exit
   intents marked ``square_off``: the only orders an engaged kill switch lets out.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from broker.errors import BrokerError
from orders import states
from orders.gateway import WaitFor, gateway
from orders.intents import PUBLISH_RETRY_POLICY, create_intent
from orders.models import Order, OrderIntent, Status
from tradebot.state import record

log = logging.getLogger(__name__)

S = Status
IN_FLIGHT = (S.SUBMITTING, S.UNKNOWN, S.ACCEPTED, S.OPEN)


def on_kill_switch(square_off: bool) -> dict:
    """Stop new orders, cancel working ones, optionally square off. Never raises."""
    summary = {"stopped": 0, "cancelling": 0, "inline": 0, "square_off": square_off}
    try:
        _stop_and_cancel(summary)
        if square_off:
            _queue_square_off()
    except Exception as exc:  # the switch itself is already engaged; say what is left
        log.exception("kill switch follow-up failed")
        record(
            "orders",
            f"kill switch: cancelling open orders failed ({exc}); cancel them "
            "by hand in the broker's terminal",
            level="error",
        )
        return summary
    record(
        "orders",
        f"kill switch: {summary['stopped']} unsent intents stopped, "
        f"{summary['cancelling']} orders being cancelled"
        + (", squaring off positions" if square_off else ""),
        level="warning",
        **summary,
    )
    return summary


def _stop_and_cancel(summary: dict) -> None:
    for intent in OrderIntent.objects.filter(status=S.NEW, square_off=False):
        if states.move(intent, S.CANCELLED, expect=[S.NEW], note="kill switch engaged"):
            summary["stopped"] += 1
    for intent in OrderIntent.objects.filter(status__in=IN_FLIGHT, square_off=False):
        _cancel(summary, intent_id=intent.pk, reason="kill switch")
    for order in Order.objects.filter(intent__isnull=True, status__in=(S.ACCEPTED, S.OPEN)):
        _cancel(summary, order_pk=order.pk, reason="kill switch")


def _cancel(summary: dict, **kwargs) -> None:
    from orders.tasks import cancel_order

    summary["cancelling"] += 1
    try:
        cancel_order.apply_async(kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        return
    except Exception as exc:  # Redis down: do it here, now
        log.warning("kill switch: cancel not queued (%s); cancelling inline", exc)
    from orders import actions

    summary["inline"] += 1
    try:
        actions.cancel(**kwargs)
    except (WaitFor, BrokerError) as exc:
        record(
            "orders",
            f"kill switch: cancel of {kwargs} not done ({exc}); the reconciler "
            "retries while the switch stays engaged",
            level="error",
        )


def _queue_square_off() -> None:
    from orders.tasks import square_off

    try:
        square_off.apply_async(
            (timezone.now().isoformat(),),
            countdown=1.0,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except Exception as exc:
        log.warning("kill switch: square off not queued (%s); doing it inline", exc)
        try:
            square_off_positions(step=99)
        except (WaitFor, BrokerError) as error:
            record(
                "orders",
                f"kill switch: square off failed ({error}); close positions by hand",
                level="error",
            )


def square_off_positions(step: int = 0) -> str:
    """Create exit intents for every non-zero broker position (once per instrument).

    Waits (``WaitFor``) while our orders are still being cancelled, a few rounds at most.
    """
    busy = (
        OrderIntent.objects.filter(status__in=IN_FLIGHT, square_off=False).count()
        + Order.objects.filter(intent__isnull=True, status__in=(S.ACCEPTED, S.OPEN)).count()
    )
    if busy and step < 5:
        raise WaitFor(1.0, f"{busy} orders still being cancelled")
    from feeds.models import Instrument

    gw = gateway()
    try:
        gw.take_slot("getPosition", "exit", budget=2.0)
        rows = gw.call(lambda client: client.get_position(), route="getPosition")
        positions = []
        for row in rows:
            net = int(float(row.get("netqty") or 0))
            instrument = Instrument.objects.filter(
                exchange=str(row.get("exchange", "")).upper(),
                token=str(row.get("symboltoken", "")),
            ).first()
            if not net:
                continue
            if instrument is None:
                record(
                    "orders",
                    f"square off: unknown instrument {row.get('tradingsymbol')} "
                    f"net {net}; close it by hand",
                    level="error",
                )
                continue
            positions.append((instrument, net, str(row.get("producttype") or "INTRADAY")))
    except BrokerError as exc:
        from orders.positions import open_instruments

        log.warning("square off: broker positions unavailable (%s); using our own fills", exc)
        positions = [(inst, net, "INTRADAY") for inst, net in open_instruments()]

    created = 0
    for instrument, net, product in positions:
        unfinished = OrderIntent.objects.filter(instrument=instrument, square_off=True).exclude(
            status__in=states.TERMINAL
        )
        if unfinished.exists():
            continue
        create_intent(
            instrument,
            "SELL" if net > 0 else "BUY",
            abs(net),
            strategy="kill_switch",
            reason="square off",
            square_off=True,
            product_type=product,
        )
        created += 1
    record(
        "orders",
        f"square off: {created} exit orders for {len(positions)} open positions",
        level="warning",
    )
    return f"{created} exits"
