"""Periodic checks scheduled by celery beat (see health.schedules)."""

from __future__ import annotations

import json
import logging
import time

from celery import shared_task
from django.conf import settings

from health import checks
from health.models import HealthCheck
from tradebot import keys, state
from tradebot.market_hours import calendar_covers, now_ist, opens_within

log = logging.getLogger(__name__)


def _once_per_window(redis_client, name: str, seconds: int) -> bool:
    """True for the first caller in a window: a second beat or a redelivery does nothing."""
    window = int(time.time() // seconds)
    return bool(redis_client.set(f"{keys.PREFIX}once:{name}:{window}", "1", nx=True, ex=seconds))


def _session_or_none():
    try:
        from broker.factory import get_session
    except ImportError:
        return None
    try:
        return get_session()
    except Exception as exc:
        log.warning("broker session unavailable for the health check: %s", exc)
        return None


@shared_task(name="health.tasks.health_check", ignore_result=True)
def health_check() -> dict:
    from broker.factory import get_redis
    from tradebot.celery import app

    redis_client = get_redis()
    try:
        if not _once_per_window(redis_client, "health", 55):
            return {"skipped": "already ran in this window"}
    except Exception:
        pass  # Redis down: run anyway, the check will say so

    results = {
        "feed": checks.check_feed(redis_client),
        "redis": checks.check_redis(redis_client),
        "database": checks.check_database(),
        "workers": checks.check_workers(app),
        "session": checks.check_session(_session_or_none()),
    }
    actions = _recover(redis_client, results)
    _warn_if_no_holiday_calendar(redis_client)
    try:
        state.sync_kill_switch_mirror()  # a Redis restarted from an old snapshot
    except Exception as exc:
        log.warning("kill switch mirror not synced: %s", exc.__class__.__name__)
    statuses = [status for status, _ in results.values() if status != HealthCheck.Status.CLOSED]
    row = HealthCheck.objects.create(
        overall=checks.overall(statuses),
        actions=actions,
        details={name: detail for name, (_, detail) in results.items()},
        **{name: status for name, (status, _) in results.items()},
    )
    summary = {
        "overall": row.overall,
        "at": row.at.isoformat(),
        **{name: status for name, (status, _) in results.items()},
    }
    try:
        redis_client.set(keys.HEALTH_LAST, json.dumps(summary))
    except Exception:
        pass
    _report_change(row)
    return summary


def _warn_if_no_holiday_calendar(redis_client) -> None:
    """Once a day: without this year's NSE holidays, holidays look like trading days."""
    year = now_ist().year
    if not calendar_covers(year):
        _record_once(
            redis_client, f"calendar-{year}", 86_400, "calendar",
            f"no NSE holiday list for {year}: the bot will treat holidays as trading days; "
            "put NSE's list in a file and set NSE_HOLIDAYS_FILE",
            "error",
        )


def _recover(redis_client, results: dict) -> list[str]:
    """Second line of defence behind the feed's own watchdog."""
    actions = []
    feed_status, detail = results["feed"]
    if feed_status == HealthCheck.Status.DOWN and "process dead" not in detail:
        try:
            redis_client.xadd(keys.FEED_COMMANDS, {"cmd": "reconnect", "by": "health"})
            actions.append("asked the feed to reconnect")
        except Exception as exc:
            actions.append(f"could not ask the feed to reconnect: {exc.__class__.__name__}")
    return actions


def _report_change(row: HealthCheck) -> None:
    previous = HealthCheck.objects.exclude(pk=row.pk).first()
    if previous is None or previous.overall != row.overall:
        level = {"ok": "info", "degraded": "warning"}.get(row.overall, "error")
        problems = {k: v for k, v in row.details.items() if getattr(row, k) not in ("ok",)}
        state.record("health", f"health {row.overall}: {problems or 'all checks ok'}", level)


@shared_task(name="health.tasks.token_check", ignore_result=True)
def token_check() -> dict:
    """Keep the broker session ahead of expiry: warn an hour before it ends, refresh it,
    and log in by TOTP when there is none while the market is open or about to open."""
    session = _session_or_none()
    if session is None:
        return {"session": "not configured"}
    expires_in = session.expires_in()
    if expires_in is None or expires_in <= 0:
        return _login_if_needed(session)

    warn = settings.SESSION_WARN_BEFORE_MINUTES * 60
    if expires_in > warn:
        return {"session": "ok", "expires_in": expires_in}
    _warn_once(f"broker session expires in {expires_in / 60:.0f} min")
    if not session.refresh_would_extend():
        # Refreshed tokens end at the same daily cut-off: log in anew once it has passed.
        return {"session": "ends at the daily cut-off", "expires_in": expires_in}
    return _renew(session, "refresh")


def _record_once(redis_client, name: str, seconds: int, component: str, message: str,
                 level: str) -> None:
    """An activity line at most once per window, however often the check runs."""
    try:
        first = _once_per_window(redis_client, name, seconds)
    except Exception:
        first = True  # Redis down: better a repeated line than none
    if first:
        state.record(component, message, level=level)


def _warn_once(message: str) -> None:
    from broker.factory import get_redis

    _record_once(get_redis(), "session-warning", 3600, "session", message, "warning")


def _login_if_needed(session) -> dict:
    """No live session: log in now if trading is near, else wait (no auth calls at night)."""
    warn = settings.SESSION_WARN_BEFORE_MINUTES * 60
    if not opens_within(now_ist(), warn, settings.MARKET_ALWAYS_OPEN):
        return {"session": "not logged in", "market": "closed"}
    return _renew(session, "login")


# How the token check renews a session: (result, activity line).
_RENEWED = {
    "refresh": ("refreshed", "broker session refreshed ahead of expiry"),
    "login": ("logged in", "logged in to the broker (TOTP) for the trading day"),
}


def _renew(session, how: str) -> dict:
    """``session.refresh()`` or ``session.login()``, recorded either way; never raises."""
    try:
        getattr(session, how)()
    except Exception as exc:
        state.record("session", f"session {how} failed: {exc}", level="error")
        return {"session": f"{how} failed", "error": str(exc)}
    result, line = _RENEWED[how]
    state.record("session", line)
    return {"session": result, "expires_in": session.expires_in()}
