"""Placing an intent exactly once, whatever fails.

The rules, in the order the code applies them:

1. Only the holder of the claim sends. Claiming is a conditional update
   ``new -> submitting`` with a fresh claim token; whoever loses the race stops.
2. Right before the send: a limiter slot, then the kill switch and the deadline.
3. A definite answer decides: accepted (an ``Order`` row), rejected (final), or "not
   sent" (connect failure, 403 rate limit, expired session): the claim is released to
   ``new`` and the send is retried, because nothing reached the broker.
4. Anything else (read timeout, reset, 5xx, no body, the task's time limit) leaves the
   outcome unknown: the intent becomes ``unknown`` and nothing is re-sent until an order
   book fetched after the send could have landed has been searched for the tag. Found:
   adopted. Not found: sent again, with the same tag, if the deadline allows.
5. A ``submitting`` intent whose holder is gone (process dead, or its lease ran out) is
   treated exactly like rule 4: a worker killed mid-send, a redelivered message and a
   second worker all end up searching the book, never sending blindly.

Celery does the retrying (``orders.tasks``); this module decides and raises
``gateway.WaitFor`` (try again after N seconds) or a broker ``TransientError``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

import psutil
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from broker.errors import (
    AmbiguousError,
    BrokerError,
    ConfigurationError,
    RateLimitedError,
    RejectedError,
    SessionExpiredError,
    TransientError,
)
from orders import book, states
from orders.gateway import WaitFor, gateway
from orders.models import OrderIntent, Status
from tradebot.state import is_kill_switch_engaged, record

log = logging.getLogger(__name__)

S = Status
# Task limits (orders.tasks): the hard limit kills a task stuck in a call; a claim older
# than the hard limit plus a margin cannot belong to a live send.
SOFT_TIME_LIMIT = 18
TIME_LIMIT = 22
LEASE_SECONDS = TIME_LIMIT + 5
# Waiting inside the task (limiter window, 403 hint) up to this long in total; beyond it
# the task is published again with a countdown and the worker is free meanwhile.
INLINE_WAIT = 6.0
# Refusals for the broker's rate taken inside one task before it is published again.
INLINE_RATE_LIMITS = 3
# After the broker answered (5xx, empty body) its OMS is done with the request.
SETTLE_AFTER_ANSWER = 1.0
# Give up waiting on an unresolved intent this long after its deadline; the reconciler
# goes on from there.
RESOLVE_GRACE = 120

_ACTIVE: set[str] = set()  # claim tokens this process is working on right now
_identity: tuple[int, str] | None = None


def identity() -> str:
    """host:pid:start-time of this process (recomputed after a fork)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        started = int(psutil.Process(pid).create_time())
        _identity = (pid, f"{socket.gethostname()}:{pid}:{started}")
    return _identity[1]


def holder_alive(claimed_by: str, claim_token: str) -> bool | None:
    """Whether the process holding a claim still runs: True / False when it can be told
    (same host), ``None`` when only the lease can say."""
    try:
        host, pid_text, started = claimed_by.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    if pid == os.getpid():
        return claim_token in _ACTIVE
    try:
        process = psutil.Process(pid)
        return (
            int(process.create_time()) == int(started) and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def http_timeout() -> float:
    return float(getattr(settings, "ANGEL_HTTP_TIMEOUT", 7.0))


def kill_blocks(intent: OrderIntent) -> bool:
    """The kill switch stops everything but its own square-off exits."""
    if intent.square_off:
        return False
    try:
        return is_kill_switch_engaged()
    except Exception as exc:  # neither Redis nor the database answered: do not send
        raise TransientError(
            f"kill switch state unreadable ({type(exc).__name__}); not sending", route="orders"
        ) from exc


def order_params(intent: OrderIntent) -> dict:
    instrument = intent.instrument
    params = {
        "variety": intent.variety,
        "tradingsymbol": instrument.symbol,
        "symboltoken": instrument.token,
        "transactiontype": intent.side,
        "exchange": instrument.exchange,
        "ordertype": intent.order_type,
        "producttype": intent.product_type,
        "duration": intent.duration,
        "price": str(intent.price) if intent.price is not None else "0",
        "quantity": intent.quantity,
        "ordertag": intent.ordertag,
    }
    return params


def load(intent_id: int) -> OrderIntent | None:
    return OrderIntent.objects.select_related("instrument").filter(pk=intent_id).first()


# --- entry point ----------------------------------------------------------------------


def place(intent_id: int) -> str:
    """Advance one intent as far as it can go now; returns what happened, in a word."""
    intent = load(intent_id)
    if intent is None:
        log.warning("intent %s does not exist; nothing to place", intent_id)
        return "missing"
    if intent.status in states.TERMINAL or intent.status in states.WORKING:
        return "done"
    if timezone.now() > intent.deadline + timedelta(seconds=RESOLVE_GRACE):
        log.warning(
            "intent %s: %s long past its deadline; left to the reconciler",
            intent.ordertag,
            intent.status,
        )
        return "left"
    if intent.status == S.NEW:
        return _from_new(intent)
    if intent.status == S.SUBMITTING:
        return _from_submitting(intent)
    return _resolve(intent)


def _from_new(intent: OrderIntent) -> str:
    now = timezone.now()
    if now >= intent.deadline:
        states.move(intent, S.EXPIRED, expect=[S.NEW], note="deadline passed; never sent")
        return "expired"
    if kill_blocks(intent):
        states.move(intent, S.CANCELLED, expect=[S.NEW], note="kill switch engaged; not sent")
        return "blocked"
    token = uuid.uuid4().hex
    claimed = states.move(
        intent,
        S.SUBMITTING,
        expect=[S.NEW],
        note="claimed for sending",
        claim_token=token,
        claimed_by=identity(),
        claimed_at=now,
        sent_at=now,
        settle_until=None,
        send_count=intent.send_count + 1,
    )
    if not claimed:
        log.info("intent %s: claimed by someone else first", intent.ordertag)
        return "taken"
    return _send(intent, token)


def _from_submitting(intent: OrderIntent) -> str:
    now = timezone.now()
    alive = holder_alive(intent.claimed_by, intent.claim_token)
    lease_left: float = LEASE_SECONDS
    if intent.claimed_at is not None:
        lease_left = (intent.claimed_at - now).total_seconds() + LEASE_SECONDS
    if alive is True or (alive is None and lease_left > 0):
        raise WaitFor(min(max(lease_left, 0.5), 2.0), f"{intent.claimed_by} is sending it")
    if not holder_gone(intent, now, "searching before any resend"):
        return "taken"
    return _resolve(intent)


def holder_gone(intent: OrderIntent, now: datetime, then: str) -> bool:
    """The intent's holder died mid-send, so its outcome is unknown: move it to UNKNOWN,
    to be settled by a book read after any answer could have arrived. False when
    someone else moved it first."""
    since = intent.sent_at or intent.claimed_at or now
    return states.move(
        intent,
        S.UNKNOWN,
        expect=[S.SUBMITTING],
        claim=intent.claim_token,
        note=f"holder {intent.claimed_by} gone mid-send; {then}",
        settle_until=since + timedelta(seconds=http_timeout() + 1),
    )


# --- sending --------------------------------------------------------------------------


def _send(intent: OrderIntent, token: str) -> str:
    _ACTIVE.add(token)
    try:
        return _send_held(intent, token)
    finally:
        _ACTIVE.discard(token)


def _release(intent: OrderIntent, token: str, why: str) -> None:
    states.move(
        intent,
        S.NEW,
        expect=[S.SUBMITTING],
        claim=token,
        note=f"not sent: {why}",
        claim_token="",
        claimed_by="",
        claimed_at=None,
        last_error=why[:500],
    )


def _send_held(intent: OrderIntent, token: str) -> str:
    """Send under our claim. The claim is never left behind: every path ends in a move."""
    gw = gateway()
    lane = "exit" if intent.is_exit else "normal"
    params = order_params(intent)
    waited = 0.0
    rate_limited = 0
    while True:
        try:
            waited += gw.take_slot("placeOrder", lane, budget=max(0.0, INLINE_WAIT - waited))
            if kill_blocks(intent):
                states.move(
                    intent,
                    S.CANCELLED,
                    expect=[S.SUBMITTING],
                    claim=token,
                    note="kill switch engaged right before the send; not sent",
                )
                return "blocked"
            if timezone.now() >= intent.deadline:
                states.move(
                    intent,
                    S.EXPIRED,
                    expect=[S.SUBMITTING],
                    claim=token,
                    note="deadline passed while waiting to send; not sent",
                )
                return "expired"
        except (WaitFor, TransientError, SoftTimeLimitExceeded) as exc:
            _release(intent, token, str(exc) or type(exc).__name__)
            raise

        sent_at = timezone.now()
        try:
            answer = gw.call(
                lambda client: client.place_order(params, priority=lane),
                route="placeOrder",
                priority=lane,
                before_retry=lambda: _still_sendable(intent),
            )
        except WaitFor as wait:
            # Refused for the session and refreshed; then no slot for the second try yet,
            # or the kill switch / deadline stopped it: nothing reached the OMS. Released
            # to new, the task comes back and cancels, expires or sends it.
            _release(intent, token, f"session refreshed; {wait.why}")
            raise
        except RateLimitedError as exc:
            # Refused at the gateway: nothing was booked. The gateway has held the
            # limiter for every process; back to the top, which waits for that window
            # (inline, or released and the task again), then checks the kill switch and
            # the deadline once more. Never log in again for this.
            rate_limited += 1
            log.warning(
                "intent %s: broker rate limit (%s); attempt %d, waiting %.2fs for the limiter",
                intent.ordertag,
                exc,
                rate_limited,
                exc.retry_after,
            )
            if rate_limited >= INLINE_RATE_LIMITS:
                _release(intent, token, f"broker rate limit: {exc}")
                raise WaitFor(exc.retry_after, "broker rate limit") from exc
            continue
        except RejectedError as exc:
            states.move(
                intent,
                S.REJECTED,
                expect=[S.SUBMITTING],
                claim=token,
                note=f"rejected: {exc}",
                last_error=str(exc)[:500],
            )
            record(
                "orders",
                f"order {intent.ordertag} rejected by the broker: {exc.message}",
                level="warning",
                intent=intent.pk,
                code=exc.code,
            )
            return "rejected"
        except (TransientError, SessionExpiredError) as exc:
            # Never left (connect failure) or refused for the session even after one
            # refresh: safe to send again later; Celery retries with backoff.
            _release(intent, token, str(exc))
            raise
        except ConfigurationError as exc:
            _release(intent, token, str(exc))
            record(
                "orders",
                f"order {intent.ordertag} not sent: {exc}",
                level="error",
                intent=intent.pk,
            )
            raise
        except (AmbiguousError, SoftTimeLimitExceeded, BrokerError, OSError) as exc:
            return _unknown(intent, token, sent_at, exc)
        return _accepted(intent, token, answer, sent_at)


def _still_sendable(intent: OrderIntent) -> None:
    """The checks before a second send (after a session refresh, which may have taken
    seconds): ``WaitFor(0)`` when the kill switch or the deadline now forbids it."""
    if kill_blocks(intent):
        raise WaitFor(0.0, "kill switch engaged during the session refresh")
    if timezone.now() >= intent.deadline:
        raise WaitFor(0.0, "deadline passed during the session refresh")


def _unknown(intent: OrderIntent, token: str, sent_at: datetime, exc: BaseException) -> str:
    answered = isinstance(exc, BrokerError) and exc.http_status is not None
    settle_after = SETTLE_AFTER_ANSWER if answered else http_timeout() + 1
    settle = max(timezone.now(), sent_at + timedelta(seconds=settle_after))
    why = str(exc) or type(exc).__name__
    log.warning(
        "intent %s: outcome unknown (%s); searching the order book in %.1fs",
        intent.ordertag,
        why,
        (settle - timezone.now()).total_seconds(),
    )
    states.move(
        intent,
        S.UNKNOWN,
        expect=[S.SUBMITTING],
        claim=token,
        note=f"outcome unknown: {why}",
        settle_until=settle,
        last_error=why[:500],
    )
    raise WaitFor((settle - timezone.now()).total_seconds(), "outcome unknown") from exc


def _accepted(intent: OrderIntent, token: str, answer: dict, sent_at: datetime) -> str:
    orderid = book.text((answer or {}).get("orderid"))
    if not orderid:
        return _unknown(
            intent,
            token,
            sent_at,
            AmbiguousError(
                "placeOrder answered without an orderid", route="placeOrder", http_status=200
            ),
        )
    with transaction.atomic():
        won = states.move(
            intent,
            S.ACCEPTED,
            expect=[S.SUBMITTING],
            claim=token,
            note=f"accepted as {orderid}",
            data={"orderid": orderid},
        )
        order = book.record_order(intent if won else None, orderid, answer, adopted=not won)
    if not won:
        # Our lease ran out mid-call and someone else took over: they search the book
        # and will find this order, so nothing is lost; but it must be looked at.
        log.error("intent %s: accepted as %s after losing the claim", intent.ordertag, orderid)
        record(
            "orders",
            f"order {orderid} ({intent.ordertag}) accepted after its claim "
            "expired; check for a duplicate",
            level="error",
            order=order.pk,
        )
    _follow(order)
    return "accepted"


def _follow(order) -> None:
    """Ask for the order's state soon (fills, exchange rejection); best effort. One order
    book read serves every order accepted in the same second."""
    if not getattr(settings, "ORDER_FOLLOW_UP", True):
        return
    try:
        from orders.tasks import schedule_refresh

        schedule_refresh(1.0)
    except Exception as exc:  # the reconciler catches up
        log.warning("order %s: follow-up not queued (%s)", order.broker_order_id, exc)


# --- resolving an unknown outcome -----------------------------------------------------


def _resolve(intent: OrderIntent) -> str:
    now = timezone.now()
    if intent.settle_until and now < intent.settle_until:
        raise WaitFor((intent.settle_until - now).total_seconds(), "letting the send settle")
    token = uuid.uuid4().hex
    claimed = states.move(
        intent,
        S.SUBMITTING,
        expect=[S.UNKNOWN],
        note="searching the order book for the tag",
        claim_token=token,
        claimed_by=identity(),
        claimed_at=now,
    )
    if not claimed:
        return "taken"
    _ACTIVE.add(token)
    try:
        return _search_then_send(intent, token)
    finally:
        _ACTIVE.discard(token)


def _back_to_unknown(intent: OrderIntent, token: str, why: str) -> None:
    states.move(
        intent, S.UNKNOWN, expect=[S.SUBMITTING], claim=token, note=f"search postponed: {why}"
    )


def _search_then_send(intent: OrderIntent, token: str) -> str:
    gw = gateway()
    fresh_after = max(t for t in (intent.settle_until, intent.sent_at, intent.claimed_at) if t)
    assert intent.ordertag is not None  # written in the insert's transaction (orders.intents)
    try:
        rows = gw.find_tag(intent.ordertag, fresh_after)
    except (WaitFor, BrokerError, SoftTimeLimitExceeded) as exc:
        _back_to_unknown(intent, token, str(exc) or type(exc).__name__)
        if isinstance(exc, WaitFor | TransientError | SessionExpiredError):
            raise
        if isinstance(exc, RateLimitedError):
            raise WaitFor(exc.retry_after, "order book rate limited") from exc
        raise TransientError(f"order book unreadable: {exc}", route="getOrderBook") from exc
    if rows:
        return adopt(intent, token, rows)
    if timezone.now() >= intent.deadline:
        states.move(
            intent,
            S.EXPIRED,
            expect=[S.SUBMITTING],
            claim=token,
            note="not in the order book and past the deadline; not sent again",
        )
        return "expired"
    log.warning(
        "intent %s: not in the order book after an unknown outcome; sending again (send %d)",
        intent.ordertag,
        intent.send_count + 1,
    )
    now = timezone.now()
    moved = OrderIntent.objects.filter(pk=intent.pk, claim_token=token, status=S.SUBMITTING).update(
        sent_at=now, send_count=intent.send_count + 1
    )
    if not moved:
        return "taken"
    intent.sent_at, intent.send_count = now, intent.send_count + 1
    states.remark(intent, "not in the order book; sending again with the same tag")
    return _send_held(intent, token)


def adopt(intent: OrderIntent, token: str | None, rows: list[dict]) -> str:
    """Take the broker's order for the intent (held under ``token``, or ``unknown`` /
    ``expired`` for the reconciler, which passes ``token=None``)."""
    rows = sorted(rows, key=lambda row: book.text(row.get("orderid")))
    if len(rows) > 1:
        record(
            "orders",
            f"{len(rows)} broker orders carry tag {intent.ordertag}: "
            + ", ".join(book.text(r.get("orderid")) for r in rows),
            level="error",
            intent=intent.pk,
        )
    row = rows[0]
    orderid = book.text(row.get("orderid"))
    target = book.our_status(row)
    expect = [S.SUBMITTING] if token else [S.UNKNOWN, S.EXPIRED]
    with transaction.atomic():
        won = states.move(
            intent,
            target,
            expect=expect,
            claim=token,
            note=f"found {orderid} in the order book; adopted",
            data={"orderid": orderid, "broker_status": book.broker_status(row)},
        )
        if won:
            order = book.record_order(intent, orderid, row, adopted=True)
    if not won:
        return "taken"
    log.info("intent %s: adopted broker order %s (%s)", intent.ordertag, orderid, target)
    if order.is_working:
        _follow(order)
    return "adopted"
