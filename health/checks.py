"""The individual checks behind the 60-second health task.

Each returns ``(status, detail)`` and never raises: a check that cannot run reports
DOWN with the reason, so one broken component never hides the others.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection

from health.models import HealthCheck
from tradebot import keys
from tradebot.market_hours import is_market_open, now_ist, opens_within

Status = HealthCheck.Status

# A feed that has not written its state for this long is dead or hung.
FEED_STATE_STALE_SECONDS = 30
# During market hours, no tick for this long makes the feed DOWN.
FEED_TICK_STALE_SECONDS = 60


def check_redis(redis_client) -> tuple[str, str]:
    try:
        started = time.perf_counter()
        redis_client.ping()
        return Status.OK, f"ping {1000 * (time.perf_counter() - started):.1f} ms"
    except Exception as exc:
        return Status.DOWN, f"{exc.__class__.__name__}: {exc}"


def check_database() -> tuple[str, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return Status.OK, connection.vendor
    except Exception as exc:
        return Status.DOWN, f"{exc.__class__.__name__}: {exc}"


def check_workers(celery_app, timeout: float = 1.0) -> tuple[str, str]:
    for attempt in (1, 2):  # the first may meet a connection Redis closed when it restarted
        try:
            replies = celery_app.control.ping(timeout=timeout)
            break
        except Exception as exc:
            if attempt == 2:
                return Status.DOWN, f"{exc.__class__.__name__}: {exc}"
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return Status.DOWN, "no Celery worker answered a ping"
    return Status.OK, ", ".join(names)


def check_feed(redis_client, now: float | None = None) -> tuple[str, str]:
    """Market-hours aware: outside the session a silent feed is normal, not an alarm."""
    if not is_market_open(now_ist(), settings.MARKET_ALWAYS_OPEN):
        return Status.CLOSED, "market closed"
    now = time.time() if now is None else now
    try:
        state = redis_client.hgetall(keys.FEED_STATE)
    except Exception as exc:
        return Status.DOWN, f"feed state unreadable: {exc.__class__.__name__}"
    if not state:
        return Status.DOWN, "feed worker has never reported"
    updated = float(state.get("updated_at") or 0)
    if now - updated > FEED_STATE_STALE_SECONDS:
        return Status.DOWN, f"feed worker silent for {now - updated:.0f} s (process dead?)"
    last_tick = float(state.get("last_tick_at") or 0)
    if now - last_tick > FEED_TICK_STALE_SECONDS:
        return Status.DOWN, f"no tick for {now - last_tick:.0f} s (state {state.get('state')})"
    if state.get("state") != "CONNECTED":
        return Status.DEGRADED, f"feed state {state.get('state')}"
    subscribed = int(state.get("subscribed") or 0)
    flowing = int(state.get("flowing") or 0)
    if flowing < subscribed:
        return Status.DEGRADED, f"{flowing}/{subscribed} instruments flowing"
    return Status.OK, f"{flowing}/{subscribed} instruments flowing"


def check_session(session) -> tuple[str, str]:
    """Is the broker session far enough from expiry? ``session`` may be None (not built)."""
    if session is None:
        return Status.DOWN, "no broker session configured"
    try:
        expires_in = session.expires_in()
    except Exception as exc:
        return Status.DOWN, f"{exc.__class__.__name__}: {exc}"
    warn = settings.SESSION_WARN_BEFORE_MINUTES * 60
    live = expires_in is not None and expires_in > 0
    if not live and not opens_within(now_ist(), warn, settings.MARKET_ALWAYS_OPEN):
        return Status.CLOSED, "market closed; the token check logs in before the open"
    if expires_in is None:
        return Status.DEGRADED, "not logged in yet"
    if expires_in <= 0:
        return Status.DOWN, "session expired"
    if expires_in < warn:
        return Status.DEGRADED, f"session expires in {expires_in / 60:.0f} min"
    return Status.OK, f"session expires in {expires_in / 3600:.1f} h"


def overall(statuses: list[str]) -> str:
    if Status.DOWN in statuses:
        return Status.DOWN
    if Status.DEGRADED in statuses:
        return Status.DEGRADED
    return Status.OK
