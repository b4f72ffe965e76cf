"""Talking to a running feed worker through Redis (admin, health checks, commands)."""

from __future__ import annotations

import logging
import threading

from tradebot import keys

log = logging.getLogger(__name__)

COMMANDS = ("reconnect", "resubscribe", "stop", "reload_watchlist")
_pending = threading.local()  # one notice per transaction, however many rows changed


def send_command(cmd: str, by: str = "admin", redis_client=None) -> str:
    """Queue a command for the feed worker; returns the stream entry id.

    The worker reads commands within a fraction of a second; one that is not running
    ignores commands queued before it started. Raises ValueError for an unknown command
    and redis errors when Redis is unreachable (the caller says so to the operator).
    """
    if cmd not in COMMANDS:
        raise ValueError(f"unknown feed command {cmd!r}; one of {', '.join(COMMANDS)}")
    if redis_client is None:
        from broker.factory import get_redis

        redis_client = get_redis()
    return redis_client.xadd(keys.FEED_COMMANDS, {"cmd": cmd, "by": by[:60]},
                             maxlen=1000, approximate=True)


def feed_state(redis_client=None) -> dict[str, str]:
    """The feed state hash (CONTRACTS.md: state, connected_since, last_tick_at, ...)."""
    if redis_client is None:
        from broker.factory import get_redis

        redis_client = get_redis()
    return redis_client.hgetall(keys.FEED_STATE)


def notify_watchlist_changed(**_kwargs) -> None:
    """Signal handler: tell the worker once the change is committed. Never raises; the
    worker's periodic check picks the change up anyway."""
    from django.db import transaction

    if getattr(_pending, "armed", False):
        return
    _pending.armed = True

    def send() -> None:
        _pending.armed = False
        try:
            send_command("reload_watchlist", by="watchlist change")
        except Exception as exc:  # Redis down: the periodic check covers it
            log.info("feed not told about the watchlist change (%s); it will poll", exc)

    transaction.on_commit(send)
