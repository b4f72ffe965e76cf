"""The intent state machine: allowed moves, done as conditional updates with an event.

``move`` is the only way an intent changes state. It is one UPDATE guarded by the states
the caller expects (and, for the holder of a send, its claim token), plus one
``OrderEvent`` row, in a single transaction. Two workers racing for the same intent
therefore cannot both win: the database decides, and the loser sees ``False``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from orders.models import OrderEvent, OrderIntent, Status

log = logging.getLogger(__name__)

S = Status
TERMINAL = frozenset({S.COMPLETE, S.REJECTED, S.CANCELLED, S.EXPIRED})
# States in which the broker has (or may have) the order.
AT_BROKER = frozenset({S.ACCEPTED, S.OPEN, S.COMPLETE})
WORKING = frozenset({S.ACCEPTED, S.OPEN})
# Broker states an order found in the book can put an intent in.
BROKER_OUTCOMES = frozenset({S.ACCEPTED, S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED})

ALLOWED: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.SUBMITTING, S.EXPIRED, S.CANCELLED}),
    # back to new: the claim was released and nothing was sent.
    S.SUBMITTING: frozenset({S.NEW, S.UNKNOWN, S.EXPIRED, S.CANCELLED} | BROKER_OUTCOMES),
    S.UNKNOWN: frozenset({S.SUBMITTING, S.EXPIRED} | BROKER_OUTCOMES),
    S.ACCEPTED: frozenset({S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED}),
    S.OPEN: frozenset({S.COMPLETE, S.REJECTED, S.CANCELLED}),
    S.COMPLETE: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    # The broker is the truth: an order found after the intent expired is adopted.
    S.EXPIRED: BROKER_OUTCOMES,
}


class IllegalTransition(ValueError):
    """A caller asked for a move the state machine forbids: a bug, raised at once."""


def check(from_states: Iterable[str], to: str) -> None:
    for state in from_states:
        if to not in ALLOWED[state]:
            raise IllegalTransition(f"{state} -> {to} is not an allowed order transition")


def move(
    intent: OrderIntent,
    to: str,
    *,
    expect: Iterable[str],
    claim: str | None = None,
    note: str = "",
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
    **fields: Any,
) -> bool:
    """Move ``intent`` to ``to`` if it is still in one of ``expect`` (and still held under
    ``claim`` when given). Extra ``fields`` are written in the same UPDATE. Returns whether
    this call won; on success ``intent`` is updated in memory too."""
    expect = tuple(expect)
    check(expect, to)
    now = now or timezone.now()
    query = OrderIntent.objects.filter(pk=intent.pk)
    if claim is not None:
        query = query.filter(claim_token=claim)
    values = {"status": to, "status_changed_at": now, **fields}
    # The in-memory state first: usually right, and then one UPDATE does it.
    candidates = sorted(expect, key=lambda state: state != intent.status)
    won_from = None
    with transaction.atomic():
        for state in candidates:
            if query.filter(status=state).update(**values) == 1:
                won_from = state
                break
        if won_from is not None:
            OrderEvent.objects.create(
                intent=intent,
                at=now,
                from_status=won_from,
                to_status=to,
                note=note[:500],
                data=data or {},
            )
    if won_from is None:
        return False
    for name, value in values.items():
        setattr(intent, name, value)
    log.info("intent %s: %s -> %s %s", intent.ordertag, won_from, to, note)
    return True


def remark(intent: OrderIntent | None, text: str, *, order=None, **data: Any) -> None:
    """An event without a state change (a retry, a cancel request, a mismatch)."""
    status = intent.status if intent is not None else (order.status if order else "")
    OrderEvent.objects.create(
        intent=intent,
        order=order,
        from_status=status,
        to_status=status,
        note=text[:500],
        data=data,
    )
