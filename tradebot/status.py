"""One picture of the running bot, for `bot_status`, the admin and status.json.

Reads only: Redis hashes the processes write, and the database. Each part degrades
to "unknown" on its own, so the summary still prints when something is down.
"""

from __future__ import annotations

import json
import time

from django.apps import apps
from django.conf import settings

from broker.errors import ConfigurationError
from tradebot import keys
from tradebot.market_hours import IST, calendar_covers, is_market_open, now_ist


def _redis():
    from broker.factory import get_redis

    return get_redis()


def _model(label: str):
    try:
        return apps.get_model(label)
    except LookupError:
        return None


# A connected feed whose newest tick is older than this is shown as stale.
STALE_AFTER_SECONDS = 5.0
# A feed process that has not written its state for this long is taken as gone.
GONE_AFTER_SECONDS = 30.0


def _websocket(state: dict, now: float) -> str:
    shown = state.get("state", "NOT RUNNING")
    updated = float(state.get("updated_at") or 0)
    if state and now - updated > GONE_AFTER_SECONDS:
        return f"NOT RUNNING (last report {now - updated:.0f} s ago, was {shown})"
    if shown == "CONNECTED" and state.get("last_tick_at"):
        age = now - float(state["last_tick_at"])
        if age > STALE_AFTER_SECONDS:
            return f"CONNECTED, no tick for {age:.0f} s"
    return shown


def _feed(redis_client) -> dict:
    state = redis_client.hgetall(keys.FEED_STATE)
    now = time.time()
    websocket = _websocket(state, now)
    tick_age = now - float(state["last_tick_at"]) if state.get("last_tick_at") else None
    # Prices flow only while the socket is up and ticks are fresh, whatever was counted.
    flowing = int(state.get("flowing") or 0) if websocket == "CONNECTED" else 0
    return {
        "websocket": websocket,
        "symbols_subscribed": int(state.get("subscribed") or 0),
        "symbols_flowing": flowing,
        "feed_last_tick_age_seconds": round(tick_age, 1) if tick_age is not None else None,
        "feed_reconnects_today": int(state.get("reconnects_today") or 0),
        "feed_last_error": state.get("last_error", ""),
    }


def _bootstrap(redis_client) -> dict:
    state = redis_client.hgetall(keys.BOOTSTRAP_STATE)
    return {
        "historical_candles_loaded": int(state.get("loaded") or 0),
        "historical_candles_total": int(state.get("total") or 0),
        "symbols_warming_up": int(state.get("warming_up") or 0),
    }


def _engine(redis_client) -> dict:
    state = redis_client.hgetall(keys.ENGINE_STATE)
    return {
        "engine": state.get("state", "NOT RUNNING"),
        "candles_held_back": int(state.get("held_candles") or 0),
    }


def _session(redis_client) -> dict:
    key = keys.SESSION.format(client_code=settings.ANGEL_CLIENT_CODE or "")
    session = redis_client.hgetall(key)
    issued = session.get("issued_at")
    expires = session.get("expires_at")
    now = time.time()
    return {
        "token_age_seconds": round(now - float(issued)) if issued else None,
        "token_expires_in_seconds": round(float(expires) - now) if expires else None,
    }


def _orders_today() -> int | None:
    order = _model("orders.Order")
    if order is None:
        return None
    start = now_ist().replace(hour=0, minute=0, second=0, microsecond=0)
    return order.objects.filter(placed_at__gte=start).count()


def collect_status() -> dict:
    from tradebot.state import is_kill_switch_engaged

    status: dict = {
        "mode": settings.TRADING_MODE,
        "at": now_ist().isoformat(timespec="seconds"),
        "market_open": is_market_open(now_ist(), settings.MARKET_ALWAYS_OPEN),
    }
    try:
        redis_client = _redis()
        redis_client.ping()
        status["redis"] = "ok"
    except ConfigurationError as exc:
        redis_client = None
        status["redis"] = f"none ({exc.message})"
    except Exception as exc:
        redis_client = None
        status["redis"] = f"down ({exc.__class__.__name__})"
    for part in (_feed, _bootstrap, _engine, _session):
        try:
            status.update(part(redis_client) if redis_client else {})
        except Exception as exc:
            status[part.__name__.strip("_") + "_error"] = str(exc)
    status.setdefault("websocket", "UNKNOWN")
    status.setdefault("symbols_subscribed", 0)
    status.setdefault("symbols_flowing", 0)
    status.setdefault("historical_candles_loaded", 0)
    status.setdefault("token_age_seconds", None)

    instrument = _model("feeds.Instrument")
    status["instrument_tokens_loaded"] = instrument.objects.count() if instrument else 0
    try:
        status["kill_switch"] = "ENGAGED" if is_kill_switch_engaged() else "off"
    except Exception as exc:
        status["kill_switch"] = f"unknown ({exc.__class__.__name__})"
    year = now_ist().year
    status["holiday_calendar"] = (
        f"NSE {year}" if calendar_covers(year)
        else f"MISSING for {year}: set NSE_HOLIDAYS_FILE"
    )
    status["orders_today"] = _orders_today()
    status["health"] = _health(redis_client)
    status["auto_recovery"] = "on"
    return status


def _health(redis_client) -> dict:
    if redis_client is not None:
        try:
            raw = redis_client.get(keys.HEALTH_LAST)
            if raw:
                return json.loads(raw)
        except Exception:
            pass
    check = _model("health.HealthCheck")
    latest = check.objects.first() if check else None
    if latest is None:
        return {"overall": "no check yet", "interval_seconds": 60}
    return {"overall": latest.overall, "at": latest.at.astimezone(IST).isoformat()}


def format_status(status: dict) -> str:
    """The start-up style summary: aligned, one fact per line, times in IST."""
    boot_total = status.get("historical_candles_total") or status.get("symbols_subscribed")
    age = status.get("token_age_seconds")
    health = status.get("health") or {}
    lines = [
        f"tradebot {status['mode'].upper()} mode          {status['at']}",
        f"  WebSocket              {status['websocket']}",
        f"  strategy engine        {status.get('engine', 'UNKNOWN')}",
        f"  symbols with prices    {status['symbols_flowing']}/{status['symbols_subscribed']}",
        "  historical candles     "
        f"{status['historical_candles_loaded']}/{boot_total or 0} loaded, "
        f"{status.get('symbols_warming_up', 0)} warming up",
        f"  instrument tokens      {status['instrument_tokens_loaded']}",
        f"  health monitoring      every 60 s, last: {health.get('overall', 'none')}",
        f"  auto-recovery          {status['auto_recovery']}",
        f"  session token age      {_duration(age)}",
        f"  kill switch            {status['kill_switch']}",
        f"  orders today           {status['orders_today']}",
        f"  market                 {'open' if status['market_open'] else 'closed'}"
        f" (holidays: {status['holiday_calendar']})",
        f"  redis                  {status['redis']}",
    ]
    if status.get("feed_last_error"):
        lines.append(f"  feed last error        {status['feed_last_error']}")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not logged in"
    seconds = int(seconds)
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s"


