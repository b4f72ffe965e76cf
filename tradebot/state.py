"""Kill switch and activity feed, for every process.

The database row is the record (it survives restarts and says who and why); Redis holds
a mirror. A mirror that says "engaged" answers in one round trip; otherwise the row
decides, so a stale mirror (a Redis that restarted from an old snapshot, or was down
when the switch was engaged) can never let an order out. The launcher and the 60 s
health check copy the row into the mirror.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from tradebot import keys
from tradebot.models import Activity, BotState, KillSwitchEvent

log = logging.getLogger(__name__)


def bot_state() -> BotState:
    state, _ = BotState.objects.get_or_create(pk=1)
    return state


def _redis():
    from broker.factory import get_redis

    return get_redis()


def sync_kill_switch_mirror() -> bool:
    """Copy the database's kill switch into Redis; returns the engaged flag. Says so
    when the mirror disagreed."""
    engaged = bot_state().kill_switch_engaged
    wanted = "1" if engaged else "0"
    previous = _redis().set(keys.KILL_SWITCH, wanted, get=True)
    if previous is not None and previous != wanted:
        log.error("kill switch mirror in Redis said %r, the database %r: mirror corrected",
                  previous, wanted)
    return engaged


def is_kill_switch_engaged() -> bool:
    """The check right before each send and each signal: engaged if the mirror or the
    database says so. Any doubt (Redis and the database both unreachable) raises:
    callers must not send."""
    try:
        if _redis().get(keys.KILL_SWITCH) == "1":
            return True
    except Exception:  # Redis down: the database decides
        log.warning("kill switch mirror unreadable in Redis; reading the database")
        return bot_state().kill_switch_engaged
    engaged = bot_state().kill_switch_engaged
    if engaged:
        try:
            sync_kill_switch_mirror()
        except Exception:
            pass  # the row has answered; the health check repairs the mirror later
    return engaged


def _set_kill_switch(engaged: bool, by: str, reason: str) -> BotState:
    """Write the record (row and event) in one transaction, then the Redis mirror."""
    with transaction.atomic():
        state = BotState.objects.select_for_update().get_or_create(pk=1)[0]
        state.kill_switch_engaged = engaged
        state.kill_switch_by = by[:150]
        state.kill_switch_reason = reason[:500]
        state.kill_switch_at = timezone.now()
        state.save()
        KillSwitchEvent.objects.create(engaged=engaged, by=by[:150], reason=reason[:500])
    try:
        _redis().set(keys.KILL_SWITCH, "1" if engaged else "0")
    except Exception:
        # Readers fall back to the database when the mirror is unreadable, and the
        # mirror is rebuilt from the row when Redis comes back empty.
        log.error("kill switch saved in the database but Redis is unreachable")
    return state


def engage_kill_switch(by: str, reason: str) -> BotState:
    """Block new orders at once, then cancel open ones (and square off if configured)."""
    from orders import kill as order_kill

    state = _set_kill_switch(True, by, reason)
    record("kill_switch", f"KILL SWITCH ENGAGED by {by}: {reason}", level="error")
    order_kill.on_kill_switch(square_off=state.square_off_on_kill)
    return state


def release_kill_switch(by: str, reason: str) -> BotState:
    """Releasing is deliberate: it needs a name and a reason, and it is recorded."""
    if not reason.strip():
        raise ValueError("releasing the kill switch needs a reason")
    state = _set_kill_switch(False, by, reason)
    record("kill_switch", f"kill switch released by {by}: {reason}", level="warning")
    return state


def record(component: str, message: str, level: str = "info", **data) -> None:
    """Add a line to the activity feed and the log. Never raises: it must not break callers."""
    getattr(log, "error" if level == "error" else level, log.info)("[%s] %s", component, message)
    try:
        Activity.objects.create(
            component=component[:40], message=message[:1000], level=level, data=data
        )
    except Exception as exc:  # database locked or gone; the log line above still stands
        log.warning("activity not recorded (%s): %s", exc.__class__.__name__, message)
