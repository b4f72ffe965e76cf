"""The orders module's way to the broker: the shared limiter, the session, the book.

The factory's client waits inside each call for the rate limiter. The order path needs
the wait *before* its last kill-switch check, and must not block a worker for long, so
it sends through its own client without a limiter and takes slots itself
(``take_slot``). The session (tokens in Redis, logins through the factory's limited
client) and the limiter (Redis) are the same ones every process uses.

The order book is fetched at most about once a second (Angel's limit); a snapshot of our
tagged orders is shared through Redis, so several tasks looking for their tags after a
fault use one fetch. A snapshot only answers "is my tag there?" if it was fetched after
the moment the caller's send could have reached the broker.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings

from broker import factory
from broker.errors import RateLimitedError, SessionExpiredError
from broker.limiter import RateLimiter, endpoint_for
from broker.rest import SmartApiClient
from broker.session import BrokerSession
from orders import tags

log = logging.getLogger(__name__)

T = TypeVar("T")

BOOK_KEY = "tb:orders:book"  # JSON {"fetched_at": epoch s, "orders": [our tagged rows]}
BOOK_TTL_SECONDS = 120


class WaitFor(Exception):  # noqa: N818 (a signal, not an error)
    """Nothing useful can happen for ``seconds`` (limiter window, settling, another
    holder): the task is published again with that countdown; nothing was sent."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(f"{why} (again in {seconds:.2f}s)")
        self.seconds = max(0.0, float(seconds))
        self.why = why


class Gateway:
    def __init__(self, client: SmartApiClient, session: BrokerSession, limiter: RateLimiter):
        self.client = client
        self.session = session
        self.limiter = limiter
        self.redis = factory.get_redis()

    def call(
        self,
        fn: Callable[[SmartApiClient], T],
        *,
        route: str = "",
        priority: str = "normal",
        before_retry: Callable[[], None] | None = None,
    ) -> T:
        """``fn(client)`` with a live session; an expired one is refreshed once and the
        call made once more (a refused session means the request was not executed). The
        second call takes its own limiter slot for ``route`` (``WaitFor`` if none soon),
        then ``before_retry()`` runs right before it: the order path's last checks (kill
        switch, deadline), which raise to stop the second send. A rate-limit refusal
        holds ``route``'s limiter endpoint for every process for the wait it asks."""
        try:
            return self._call(fn, route, priority, before_retry)
        except RateLimitedError as error:
            # Angel counted more than our limiter did: every process waits, not just us.
            if route:
                self.limiter.hold(endpoint_for(route), error.retry_after)
            raise

    def _call(
        self,
        fn: Callable[[SmartApiClient], T],
        route: str,
        priority: str,
        before_retry: Callable[[], None] | None,
    ) -> T:
        tokens = self.session.current()
        self.client.set_jwt(tokens.jwt)
        try:
            return fn(self.client)
        except SessionExpiredError as error:
            log.warning("%s; refreshing the session, then retry 1 of 1", error)
            tokens = self.session.invalidate(tokens.jwt)
            self.client.set_jwt(tokens.jwt)
            if route:
                self.take_slot(route, priority, budget=1.5)
            if before_retry is not None:
                before_retry()
            return fn(self.client)

    def take_slot(self, route: str, priority: str, *, budget: float, sleep=time.sleep) -> float:
        """Take a limiter slot for ``route``, sleeping for it while the wait stays within
        ``budget`` seconds in total. Returns the time slept; raises ``WaitFor`` (no slot
        taken) when the next slot is further away."""
        endpoint = endpoint_for(route)
        slept = 0.0
        while True:
            wait = self.limiter.try_acquire(endpoint, priority)
            if wait == 0.0:
                return slept
            if slept + wait > budget:
                raise WaitFor(wait, f"rate limiter: no {priority} slot for {endpoint}")
            sleep(wait)
            slept += wait

    # --- the order book ---------------------------------------------------------------

    def cached_book(self) -> tuple[float, list[dict]] | None:
        raw = self.redis.get(BOOK_KEY)
        if not raw:
            return None
        try:
            snapshot = json.loads(raw)
            return float(snapshot["fetched_at"]), list(snapshot["orders"])
        except (ValueError, KeyError, TypeError):
            return None

    def fetch_book(self, *, budget: float = 1.5) -> tuple[float, list[dict]]:
        """The whole order book now (limiter first, up to ``budget`` s of waiting)."""
        self.take_slot("getOrderBook", "normal", budget=budget)
        return self._fetch_now()

    def _fetch_now(self) -> tuple[float, list[dict]]:
        """Fetch the book (slot already taken) and share our tagged rows through Redis."""
        fetched_at = time.time()  # before the request: the book is at least this fresh
        rows = self.call(lambda client: client.get_order_book(), route="getOrderBook")
        ours = [row for row in rows if tags.is_ours(row.get("ordertag"))]
        payload = json.dumps({"fetched_at": fetched_at, "orders": ours}, default=str)
        try:
            self.redis.set(BOOK_KEY, payload, ex=BOOK_TTL_SECONDS)
        except Exception as exc:  # the cache is an optimisation; the answer stands
            log.warning("order book snapshot not cached (%s)", type(exc).__name__)
        return fetched_at, rows

    def find_tag(self, tag: str, fresh_after: datetime, *, budget: float = 1.5) -> list[dict]:
        """Book rows carrying ``tag``, from a snapshot fetched after ``fresh_after``.

        Uses another task's snapshot when it is fresh enough; otherwise fetches one,
        waiting for the limiter up to ``budget`` seconds (``WaitFor`` beyond that).
        """
        wanted = fresh_after.timestamp()
        tag = tag.upper()
        give_up = time.monotonic() + budget
        while True:
            cached = self.cached_book()
            if cached is not None and cached[0] >= wanted:
                rows = cached[1]
                break
            try:
                self.take_slot("getOrderBook", "normal", budget=0.0)
            except WaitFor as wait:
                if time.monotonic() + wait.seconds > give_up:
                    raise
                # Another task may fetch meanwhile: look at the cache again after the wait.
                time.sleep(wait.seconds)
                continue
            rows = self._fetch_now()[1]
            break
        return [row for row in rows if as_text(row.get("ordertag")).upper() == tag]


_lock = threading.Lock()
_cached: dict[tuple, Gateway] = {}


def _mac() -> str:
    node = uuid.getnode()
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def gateway() -> Gateway:
    """The process's gateway, rebuilt after a fork or when the broker settings change."""
    key = (os.getpid(), settings.ANGEL_REST_URL, settings.REDIS_URL, settings.ANGEL_API_KEY)
    with _lock:
        found = _cached.get(key)
        if found is not None:
            return found
        for old in _cached.values():
            old.client.close()
        _cached.clear()
        client = SmartApiClient(
            settings.ANGEL_REST_URL,
            settings.ANGEL_API_KEY or "",
            timeout=settings.ANGEL_HTTP_TIMEOUT,
            limiter=None,  # the order path takes its slots itself
            client_local_ip=getattr(settings, "ANGEL_CLIENT_LOCAL_IP", "127.0.0.1"),
            client_public_ip=getattr(settings, "ANGEL_CLIENT_PUBLIC_IP", "127.0.0.1"),
            mac=getattr(settings, "ANGEL_MAC_ADDRESS", None) or _mac(),
        )
        # Logins and refreshes go through the shared session (its client waits for the
        # limiter); only the order routes use this limiter-less client.
        built = Gateway(client, factory.get_session(), factory.get_limiter())
        _cached[key] = built
        return built


def reset() -> None:
    with _lock:
        for old in _cached.values():
            old.client.close()
        _cached.clear()


def as_text(value: Any) -> str:
    return "" if value is None else str(value).strip()
