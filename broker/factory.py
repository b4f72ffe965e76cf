"""Build the broker objects from ``django.conf.settings``, once per process.

Everything else in ``broker`` takes its configuration as arguments; this module is the
only one that reads settings. ``reset()`` drops the cached objects (tests, and after a
fork the child must not reuse the parent's sockets).
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import redis
from django.conf import settings

from broker.errors import ConfigurationError
from broker.limiter import RateLimiter
from broker.rest import SmartApiClient
from broker.session import BrokerSession

_lock = threading.RLock()
_cache: dict[str, object] = {}
_pid = os.getpid()


def _cached(name: str, build):
    global _pid
    with _lock:
        if _pid != os.getpid():  # forked: the parent's connections are not ours
            _cache.clear()
            _pid = os.getpid()
        if name not in _cache:
            _cache[name] = build()
        return _cache[name]


def reset() -> None:
    """Forget the cached client, limiter, session and Redis connection pool."""
    with _lock:
        client = _cache.pop("client", None)
        if isinstance(client, SmartApiClient):
            client.close()
        connection = _cache.pop("redis", None)
        if isinstance(connection, redis.Redis):
            connection.close()
        _cache.clear()


def make_redis(url: str) -> redis.Redis:
    """A redis-py client with the project's timeouts (runtime.md §4.4)."""
    if url == getattr(settings, "NO_REDIS_URL", None):
        raise ConfigurationError(
            "no Redis to talk to: `make run` is not running from this folder "
            "(var/redis/url is missing) and REDIS_URL is unset"
        )
    try:
        return _from_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"REDIS_URL cannot be used: {exc}") from None


def _from_url(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=10,
    )


def get_redis() -> redis.Redis:
    return _cached("redis", lambda: make_redis(settings.REDIS_URL))


def get_limiter() -> RateLimiter:
    return _cached("limiter", lambda: RateLimiter(get_redis()))


def _mac() -> str:
    node = uuid.getnode()
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def new_client(*, limited: bool = True, **overrides: Any) -> SmartApiClient:
    """A fresh, uncached client from settings. ``limited=False`` for callers that take
    limiter slots themselves; ``overrides`` go to SmartApiClient (e.g. read_retries=0)."""
    options: dict[str, Any] = {
        "timeout": settings.ANGEL_HTTP_TIMEOUT,
        "limiter": get_limiter() if limited else None,
        "client_local_ip": getattr(settings, "ANGEL_CLIENT_LOCAL_IP", "127.0.0.1"),
        "client_public_ip": getattr(settings, "ANGEL_CLIENT_PUBLIC_IP", "127.0.0.1"),
        "mac": getattr(settings, "ANGEL_MAC_ADDRESS", None) or _mac(),
    }
    options.update(overrides)
    return SmartApiClient(settings.ANGEL_REST_URL, settings.ANGEL_API_KEY or "", **options)


def get_client() -> SmartApiClient:
    """The process's shared client (limited, default retries)."""
    return _cached("client", new_client)


def get_session() -> BrokerSession:
    """The shared session; raises ConfigurationError naming missing ANGEL_* settings."""

    def build() -> BrokerSession:
        return BrokerSession(
            get_client(),
            get_redis(),
            settings.ANGEL_CLIENT_CODE or "",
            settings.ANGEL_PIN or "",
            settings.ANGEL_TOTP_SECRET or "",
            settings.SESSION_LIFETIME_HOURS * 3600,
        )

    return _cached("session", build)
