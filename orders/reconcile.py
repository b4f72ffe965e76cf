"""Reconciliation: the database against the broker's order book, trade book, positions.

Runs at worker start-up and every 60 s (beat, ``orders.tasks.reconcile_orders``), at
most once at a time (a Redis lock) and through the shared rate limiter. One run:

- updates every known order from its book row (status, fills, rejection text);
- adopts broker orders carrying our tag: into their intent when it is ``unknown``,
  ``expired`` or has lost its holder, otherwise as an ``Order`` without an intent; each
  adoption of an order the database did not know is reported in the activity feed;
- expires unresolved intents whose tag is not in the book and whose deadline passed,
  and enqueues the place task again for intents nobody is working on (Redis was down
  at enqueue, a worker died and its message was acked);
- records fills from the trade book;
- while the kill switch is engaged, cancels any working order it finds;
- compares our net quantities with the broker's positions and reports differences.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from broker.errors import BrokerError
from orders import book, placement, states, tags
from orders.gateway import WaitFor, gateway
from orders.intents import enqueue_place
from orders.models import Fill, Order, OrderIntent, Status
from tradebot.state import is_kill_switch_engaged, record

log = logging.getLogger(__name__)

S = Status
LOCK_KEY = "tb:orders:reconcile:lock"
LOCK_MS = 55_000
# A new intent nobody picked up for this long is enqueued again.
STALE_NEW_SECONDS = 5.0


def reconcile(*, reason: str = "periodic", positions: bool = True) -> dict:
    """One reconciliation pass; returns counts of what it did (never raises for the
    broker being unavailable: it logs a warning and the next pass tries again)."""
    gw = gateway()
    token = uuid.uuid4().hex
    if not gw.redis.set(LOCK_KEY, token, nx=True, px=LOCK_MS):
        return {"skipped": "another reconciliation is running"}
    started = time.monotonic()
    summary = {
        "reason": reason,
        "updated": 0,
        "adopted": 0,
        "orphans": 0,
        "expired": 0,
        "requeued": 0,
        "fills": 0,
        "cancelling": 0,
        "mismatches": 0,
    }
    try:
        try:
            fetched_at, rows = gw.fetch_book(budget=5.0)
        except (WaitFor, BrokerError) as exc:
            log.warning(
                "reconcile (%s): order book unavailable (%s); next pass retries", reason, exc
            )
            summary["error"] = str(exc)
            _requeue_stale(summary, book_fetched_at=None, in_book=set())
            return summary
        _apply_book(rows, summary)
        in_book = {book.text(row.get("ordertag")).upper() for row in rows}
        _requeue_stale(summary, book_fetched_at=fetched_at, in_book=in_book)
        _record_fills(gw, summary)
        if _kill_engaged():
            _cancel_working(summary)
        if positions:
            _compare_positions(gw, summary)
    finally:
        if gw.redis.get(LOCK_KEY) == token:
            gw.redis.delete(LOCK_KEY)
    summary["seconds"] = round(time.monotonic() - started, 3)
    level = logging.INFO if not (summary["orphans"] or summary["mismatches"]) else logging.WARNING
    log.log(level, "reconcile (%s): %s", reason, summary)
    return summary


def _kill_engaged() -> bool:
    try:
        return is_kill_switch_engaged()
    except Exception:
        return True  # in doubt, keep cancelling


def _apply_book(rows: list[dict], summary: dict) -> dict[str, list[dict]]:
    tagged: dict[str, list[dict]] = {}
    for row in rows:
        tag = book.text(row.get("ordertag")).upper()
        orderid = book.text(row.get("orderid"))
        if not orderid:
            continue
        order = Order.objects.select_related("intent").filter(broker_order_id=orderid).first()
        if order is not None:
            if book.apply_row(order, row):
                summary["updated"] += 1
            continue
        if not tags.is_ours(tag):
            continue  # someone else's order (manual, another app): not ours to manage
        tagged.setdefault(tag, []).append(row)
    for tag, found in tagged.items():
        _adopt(tag, found, summary)
    return tagged


def _adopt(tag: str, rows: list[dict], summary: dict) -> None:
    pk = tags.parse_pk(tag)
    assert pk is not None  # only tags of ours (tags.is_ours) are adopted
    intent = OrderIntent.objects.select_related("instrument").filter(pk=pk).first()
    if intent is not None and intent.ordertag != tag:
        intent = None  # same primary key, another (older) database's intent
    if intent is not None and not _has_order(intent):
        if intent.status == S.SUBMITTING:
            alive = placement.holder_alive(intent.claimed_by, intent.claim_token)
            lease_end = (intent.claimed_at or timezone.now()) + timedelta(
                seconds=placement.LEASE_SECONDS
            )
            if alive is True or (alive is None and timezone.now() < lease_end):
                return  # its holder is about to record the answer itself
            states.move(
                intent,
                S.UNKNOWN,
                expect=[S.SUBMITTING],
                claim=intent.claim_token,
                note="reconciler: holder gone; its order is in the book",
            )
        if intent.status in (S.UNKNOWN, S.EXPIRED):
            if placement.adopt(intent, None, rows) == "adopted":
                summary["adopted"] += 1
                if intent.status == S.EXPIRED:
                    record(
                        "orders",
                        f"order for expired intent {tag} found and adopted",
                        level="warning",
                        intent=intent.pk,
                    )
                return
    for row in rows:
        orderid = book.text(row.get("orderid"))
        order = book.record_order(None, orderid, row, adopted=True)
        if order.instrument_id is None:
            _link_instrument(order)
        summary["orphans"] += 1
        states.remark(None, f"adopted unknown broker order {orderid} tagged {tag}", order=order)
        record(
            "orders",
            f"adopted broker order {orderid} ({tag}, {order.side} "
            f"{order.quantity} {order.tradingsymbol}, {order.broker_status}) that the "
            "database did not know",
            level="warning",
            order=order.pk,
            tag=tag,
        )


def _has_order(intent: OrderIntent) -> bool:
    return Order.objects.filter(intent=intent).exists()


def _link_instrument(order: Order) -> None:
    from feeds.models import Instrument

    instrument = Instrument.objects.filter(exchange=order.exchange, token=order.symboltoken).first()
    if instrument is not None:
        order.instrument = instrument
        order.save(update_fields=["instrument"])


def _requeue_stale(
    summary: dict, *, book_fetched_at: float | None, in_book: set[str]
) -> None:
    """``in_book``: every tag of ours in the book just read, known orders included."""
    now = timezone.now()
    for intent in OrderIntent.objects.filter(status__in=(S.NEW, S.UNKNOWN, S.SUBMITTING)):
        if intent.status == S.NEW:
            if now >= intent.deadline:
                if states.move(
                    intent,
                    S.EXPIRED,
                    expect=[S.NEW],
                    note="reconciler: never sent before its deadline",
                ):
                    summary["expired"] += 1
                    record(
                        "orders",
                        f"intent {intent.ordertag} ({intent.side} {intent.quantity} "
                        f"{intent.instrument.symbol}) expired unsent: it could not be queued "
                        "before its deadline",
                        level="warning",
                    )
            elif (now - intent.status_changed_at).total_seconds() >= STALE_NEW_SECONDS:
                summary["requeued"] += int(enqueue_place(intent))
            continue
        if intent.status == S.SUBMITTING:
            alive = placement.holder_alive(intent.claimed_by, intent.claim_token)
            lease_end = (intent.claimed_at or now) + timedelta(seconds=placement.LEASE_SECONDS)
            if alive is True or (alive is None and now < lease_end):
                continue
            # Handled as unknown below, so that past its deadline it is expired (or
            # adopted), not re-queued forever.
            if not placement.holder_gone(intent, now, "the reconciler settles it"):
                continue
        # unknown: expire it if a book fetched after it settled does not have its tag
        settled = intent.settle_until or intent.sent_at or now
        if (
            book_fetched_at is not None
            and book_fetched_at >= settled.timestamp()
            and intent.ordertag not in in_book
            and now >= intent.deadline
        ):
            if states.move(
                intent,
                S.EXPIRED,
                expect=[S.UNKNOWN],
                note="reconciler: not in the order book and past its deadline",
            ):
                summary["expired"] += 1
        elif now < intent.deadline + timedelta(seconds=placement.RESOLVE_GRACE):
            summary["requeued"] += int(enqueue_place(intent))


def _record_fills(gw, summary: dict) -> None:
    try:
        gw.take_slot("getTradeBook", "normal", budget=2.0)
        trades = gw.call(lambda client: client.get_trade_book(), route="getTradeBook")
    except (WaitFor, BrokerError) as exc:
        log.warning("reconcile: trade book unavailable (%s)", exc)
        return
    orders = {
        o.broker_order_id: o
        for o in Order.objects.filter(
            broker_order_id__in=[book.text(t.get("orderid")) for t in trades]
        )
    }
    for trade in trades:
        order = orders.get(book.text(trade.get("orderid")))
        fill_id = book.text(trade.get("fillid"))
        if order is None or not fill_id:
            continue
        _, created = Fill.objects.get_or_create(
            order=order,
            fill_id=fill_id,
            defaults={
                "quantity": book.whole(trade.get("fillsize")),
                "price": book.rupees(trade.get("fillprice")) or Decimal("0"),
            },
        )
        summary["fills"] += int(created)


def _cancel_working(summary: dict) -> None:
    from orders.kill import _cancel

    for order in Order.objects.filter(status__in=(S.ACCEPTED, S.OPEN)).select_related("intent"):
        if order.intent is not None and order.intent.square_off:
            continue
        _cancel(summary, order_pk=order.pk, reason="kill switch (reconciler)")


def _compare_positions(gw, summary: dict) -> None:
    from orders.positions import net_quantity

    try:
        gw.take_slot("getPosition", "normal", budget=2.0)
        rows = gw.call(lambda client: client.get_position(), route="getPosition")
    except (WaitFor, BrokerError) as exc:
        log.warning("reconcile: positions unavailable (%s)", exc)
        return
    from feeds.models import Instrument

    for row in rows:
        instrument = Instrument.objects.filter(
            exchange=book.text(row.get("exchange")).upper(), token=book.text(row.get("symboltoken"))
        ).first()
        if instrument is None:
            continue
        broker_net = book.whole(row.get("netqty"))
        ours = net_quantity(instrument)
        if broker_net != ours:
            summary["mismatches"] += 1
            # Said once per distinct difference every 15 minutes, not on every pass.
            seen = f"tb:orders:mismatch:{instrument.pk}:{broker_net}:{ours}"
            if not gw.redis.set(seen, "1", nx=True, ex=900):
                continue
            record(
                "orders",
                f"position mismatch {instrument.symbol}: broker {broker_net}, our orders {ours}",
                level="warning",
                instrument=instrument.pk,
                broker=broker_net,
                ours=ours,
            )
