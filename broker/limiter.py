"""The one SmartAPI rate limiter, shared by every process through Redis.

Angel One limits each endpoint per second, per minute and per hour at once (smartapi.md
§2.2) and answers an excess with HTTP 403. Every process that talks to the broker (feed,
engine, Celery workers, admin actions) asks this limiter first, so together they stay
under the limits below, which are set a little under Angel's (and orders under the
exchange's 10 orders/s algo threshold).

Design. Each endpoint has one Redis sorted set: a log of admitted calls scored by the
Redis server's clock in microseconds (``TIME``, so process clocks never matter). One Lua
script counts the calls inside every window of the endpoint, admits the call only if
*all* windows have room and then records it once (all-or-nothing), or else returns how
long until the oldest blocking entry leaves its window. A sliding log is exact: no window
of any length ever holds more than its limit, which is how Angel describes its own
windows (a burst early in a minute blocks the rest of that minute).

Priority lanes. An endpoint may reserve part of each window for urgent callers: exits
and cancels (``priority="exit"`` / ``"cancel"``) may use the whole budget, new entries
(``"normal"``) only the unreserved part. When the budget runs short an exit still goes.

Why not the ``limits`` library (runtime.md §2.3)? Its Redis moving window checks one
window per call; checking three windows separately is not atomic (a call can consume
the second-window slot and then fail on the minute window), and it has no reserved
lanes. The script below is about forty lines and does both in one round trip.

Holds. When the broker refuses a call for its rate anyway (403), ``hold`` stops the
endpoint for every caller and lane for the wait the refusal asks for; the script answers
the hold's remaining time first, so every process backs off, not just the refused one.

Fail closed: when Redis cannot be reached nothing is sent; ``TransientError`` names
Redis, so the caller retries later exactly as for a network fault.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from broker.errors import RateLimitedError, TransientError
from tradebot import keys

log = logging.getLogger(__name__)

PRIORITIES = ("normal", "exit", "cancel")


@dataclass(frozen=True)
class Window:
    """At most ``limit`` calls in any ``seconds``-long interval; ``reserve`` of them are
    kept for exits and cancels."""

    limit: int
    seconds: float
    reserve: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.seconds <= 0:
            raise ValueError(f"a window needs limit >= 1 and seconds > 0, got {self}")
        if not 0 <= self.reserve < self.limit:
            raise ValueError(f"reserve must be below the limit, got {self}")


def _windows(per_second=None, per_minute=None, per_hour=None, *, second=1.0, reserve=(0, 0, 0)):
    """Windows from the /s, /min, /h columns of the limits table."""
    spans = ((per_second, second), (per_minute, 60.0), (per_hour, 3600.0))
    return tuple(
        Window(limit, seconds, held)
        for (limit, seconds), held in zip(spans, reserve, strict=True)
        if limit
    )


# Angel's numbers (smartapi.md §2.2) on the left; ours, slightly lower, in the code.
# Endpoints Angel allows 1 or 2 calls a second get them per 1.1 s, so that network
# jitter cannot squeeze two of our calls into one of Angel's seconds.
_SLOW = 1.1
DEFAULT_LIMITS: dict[str, tuple[Window, ...]] = {
    # 1/s
    "loginByPassword": _windows(1, None, 60, second=_SLOW),
    # 1/s, 1000/h
    "generateTokens": _windows(1, None, 900, second=_SLOW),
    # 3/s, 1000/h
    "getProfile": _windows(2, None, 900),
    # 1/s
    "logout": _windows(1, second=_SLOW),
    # 2/s
    "getRMS": _windows(2, second=_SLOW),
    # placeOrder + modifyOrder + cancelOrder together: 20/s, 500/min, 1000/h. Ours stays
    # under the 10 orders/s algo-registration threshold, a quarter reserved for exits.
    "orders": _windows(8, 450, 900, reserve=(2, 110, 220)),
    # 1/s each
    "getOrderBook": _windows(1, second=_SLOW),
    "getTradeBook": _windows(1, second=_SLOW),
    "getPosition": _windows(1, second=_SLOW),
    "getHolding": _windows(1, second=_SLOW),
    "searchScrip": _windows(1, second=_SLOW),
    # 10/s, 500/min, 5000/h
    "getLtpData": _windows(9, 450, 4500),
    "orderDetails": _windows(9, 450, 4500),
    "quote": _windows(9, 450, 4500),
    "convertPosition": _windows(9, 450, 4500),
    "margin": _windows(9, 450, 4500),
    "gtt": _windows(9, 450, 4500),
    # 3/s, 500/min (staff: effectively 180), 5000/h
    "getCandleData": _windows(3, 170, 4500, second=_SLOW),
    # Unlisted endpoints (OI data, greeks, ...): the reference says assume about 1/s.
    "default": _windows(1, second=_SLOW),
}

# Routes that share one budget; every other route is limited under its own name.
ROUTE_ENDPOINTS = {
    "placeOrder": "orders",
    "modifyOrder": "orders",
    "cancelOrder": "orders",
    "createRule": "gtt",
    "modifyRule": "gtt",
    "cancelRule": "gtt",
    "ruleDetails": "gtt",
    "ruleList": "gtt",
}


def endpoint_for(route: str) -> str:
    """The limiter endpoint a SmartAPI route counts against."""
    return ROUTE_ENDPOINTS.get(route, route)


# KEYS[1] call log (sorted set), KEYS[2] member sequence, KEYS[3] hold (set by ``hold``).
# ARGV[1] window count, then per window: capacity for this caller, span in microseconds.
# Returns 0 when the call was admitted, else the wait in microseconds.
_SCRIPT = """
local held = redis.call('PTTL', KEYS[3])
if held > 0 then return held * 1000 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local longest = 0
local wait = 0
for i = 0, n - 1 do
  local cap = tonumber(ARGV[2 + i * 2])
  local span = tonumber(ARGV[3 + i * 2])
  if span > longest then longest = span end
  local floor = '(' .. string.format('%d', now - span)
  local count = redis.call('ZCOUNT', KEYS[1], floor, '+inf')
  if count >= cap then
    local k = count - cap
    local entry = redis.call('ZRANGEBYSCORE', KEYS[1], floor, '+inf',
                             'WITHSCORES', 'LIMIT', k, 1)
    local w = tonumber(entry[2]) + span - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - longest))
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], string.format('%d', now), string.format('%d:%d', now, seq))
local ttl = math.floor(longest / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 0
"""


# KEYS[1] hold key; ARGV[1] milliseconds. Only ever lengthens a hold.
_HOLD_SCRIPT = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


class RateLimitTimeout(RateLimitedError):
    """Our own limiter had no slot for this call within the caller's timeout.

    Nothing was sent. The caller waits ``retry_after`` seconds or gives the work up (an
    order past its deadline is dropped by the orders module).
    """


class RateLimiter:
    """``try_acquire`` / ``acquire`` a slot for one call to an endpoint, across processes."""

    def __init__(
        self,
        redis_client: redis.Redis,
        limits: Mapping[str, tuple[Window, ...]] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = redis_client
        self._limits = dict(DEFAULT_LIMITS)
        if limits:
            self._limits.update(limits)
        self._script = redis_client.register_script(_SCRIPT)
        self._hold_script = redis_client.register_script(_HOLD_SCRIPT)
        self._sleep = sleep
        self._warned_unknown: set[str] = set()

    def windows(self, endpoint: str) -> tuple[Window, ...]:
        found = self._limits.get(endpoint)
        if found is None:
            if endpoint not in self._warned_unknown:
                self._warned_unknown.add(endpoint)
                log.warning("limiter: no limits for %r; using the default of about 1/s", endpoint)
            found = self._limits["default"]
        return found

    def try_acquire(self, endpoint: str, priority: str = "normal") -> float:
        """Take a slot if every window has room: 0.0 = taken, else seconds to wait."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
        urgent = priority != "normal"
        args: list[int] = [0]
        for window in self.windows(endpoint):
            capacity = window.limit if urgent else window.limit - window.reserve
            args += [capacity, round(window.seconds * 1_000_000)]
        args[0] = (len(args) - 1) // 2
        log_key = keys.LIMIT.format(endpoint=endpoint, window="log")
        seq_key = keys.LIMIT.format(endpoint=endpoint, window="seq")
        hold_key = keys.LIMIT.format(endpoint=endpoint, window="hold")
        try:
            wait_us = self._script(keys=[log_key, seq_key, hold_key], args=args)
        except redis.RedisError as exc:
            raise TransientError(
                f"rate limiter: Redis failed ({type(exc).__name__}: {exc}); not sending",
                route=endpoint,
            ) from exc
        return int(wait_us) / 1_000_000

    def hold(self, endpoint: str, seconds: float) -> None:
        """Admit nothing to ``endpoint`` for ``seconds``, in any lane and any process: the
        broker answered a call with its rate-limit refusal, so our count and its count
        disagree. Best effort: a Redis failure is logged and the caller's own wait stands."""
        milliseconds = max(1, round(seconds * 1000))
        hold_key = keys.LIMIT.format(endpoint=endpoint, window="hold")
        try:
            self._hold_script(keys=[hold_key], args=[milliseconds])
        except redis.RedisError as exc:
            log.warning("limiter: hold on %s not stored (%s)", endpoint, type(exc).__name__)

    def acquire(
        self, endpoint: str, priority: str = "normal", timeout: float | None = None
    ) -> float:
        """Block until a slot is taken; return the seconds spent waiting.

        Raises ``RateLimitTimeout`` when the next slot is further away than ``timeout``.
        """
        started = time.monotonic()
        while True:
            wait = self.try_acquire(endpoint, priority)
            if wait == 0.0:
                return time.monotonic() - started
            if timeout is not None:
                remaining = timeout - (time.monotonic() - started)
                if wait > remaining:
                    raise RateLimitTimeout(
                        f"no {priority} slot within {timeout:.1f}s (next in {wait:.2f}s)",
                        route=endpoint,
                        retry_after=wait,
                    )
            # A little jitter so processes woken together do not collide again.
            self._sleep(wait + random.uniform(0.0, 0.005))
