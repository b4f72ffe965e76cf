"""One broker session for the whole bot, kept in Redis so every process shares it.

The JWT, refresh token and feed token live in the hash ``keys.SESSION`` with the time
they were issued and the time they are expected to expire. Logging in and refreshing
happen under a Redis lock (``keys.SESSION_LOCK``, unique token, compare on release): a
process that finds the lock taken waits for the holder's result instead of logging in
a second time. Inside a process a ``threading.Lock`` does the same for threads.

The tokens are stored in Redis in clear: Redis listens on 127.0.0.1 only and the tokens
are valid for one trading day. They never appear in logs or reprs.
"""

from __future__ import annotations

import binascii
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import TypeVar, cast

import pyotp
import redis
from redis.typing import EncodableT, FieldT

from broker.errors import (
    ConfigurationError,
    RateLimitedError,
    RejectedError,
    SessionExpiredError,
    TransientError,
)
from broker.rest import SmartApiClient
from tradebot import keys
from tradebot.env import mask
from tradebot.market_hours import IST

log = logging.getLogger(__name__)

T = TypeVar("T")

TOTP_STEP = 30  # seconds (RFC 6238, as Angel uses it)
# Angel's tokens last one trading day (smartapi.md §1.5: "login every day"; 24-28 h at
# most). A session is treated as ended at the next 05:00 IST even if its lifetime is
# longer, so the bot logs in fresh each morning instead of failing its first calls.
DAILY_CUTOFF = clock_time(5, 0)

# Compare-and-delete: only the holder of the lock token may release it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def require_credentials(
    client_code: str | None, pin: str | None, api_key: str | None, totp_secret: str | None
) -> None:
    """Raise ``ConfigurationError`` naming every missing ANGEL_* setting (values unshown)."""
    missing = [
        name
        for name, value in (
            ("ANGEL_CLIENT_CODE", client_code),
            ("ANGEL_PIN", pin),
            ("ANGEL_API_KEY", api_key),
            ("ANGEL_TOTP_SECRET", totp_secret),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(
            f"missing broker credentials: {', '.join(missing)} (set them in the environment "
            "or as NAME_FILE secrets)",
            route="session",
        )
    try:
        pyotp.TOTP(str(totp_secret)).now()
    except (binascii.Error, ValueError, TypeError):
        raise ConfigurationError(
            "ANGEL_TOTP_SECRET is not a valid base32 TOTP secret", route="session"
        ) from None


def session_end(
    issued_at: float, lifetime_seconds: float, cutoff: clock_time | None = DAILY_CUTOFF
) -> float:
    """When a session issued at ``issued_at`` (epoch s) is expected to end: after its
    lifetime, or at the first ``cutoff`` (IST wall time) after issue, whichever is first."""
    end = issued_at + lifetime_seconds
    if cutoff is None:
        return end
    issued = datetime.fromtimestamp(issued_at, IST)
    boundary = issued.replace(hour=cutoff.hour, minute=cutoff.minute, second=0, microsecond=0)
    if boundary <= issued:
        boundary += timedelta(days=1)
    return min(end, boundary.timestamp())


@dataclass(frozen=True)
class SessionTokens:
    """The three tokens of one session and when it was issued / is expected to end."""

    jwt: str
    refresh_token: str
    feed_token: str
    issued_at: float  # epoch seconds
    expires_at: float  # epoch seconds: the lifetime, or the next daily cut-off if sooner

    def __repr__(self) -> str:
        issued = datetime.fromtimestamp(self.issued_at, IST).strftime("%Y-%m-%d %H:%M:%S")
        return f"SessionTokens(jwt={mask(self.jwt)}, issued_at={issued} IST)"

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def session_status(
    redis_client: redis.Redis, client_code: str, *, now: float | None = None
) -> dict[str, object]:
    """The shared session's state from Redis, without credentials or a login; no secret.

    ``logged_in``, and when a session is stored: ``issued_at``, ``expires_at`` (epoch s),
    ``age_seconds`` and ``expires_in`` (negative once past the expected expiry).
    """
    raw = redis_client.hmget(
        keys.SESSION.format(client_code=client_code), ["issued_at", "expires_at"]
    )
    issued_raw, expires_raw = raw
    if issued_raw is None or expires_raw is None:
        return {"logged_in": False, "client_code": client_code}
    issued_at, expires_at = float(issued_raw), float(expires_raw)
    now = time.time() if now is None else now
    return {
        "logged_in": now < expires_at,
        "client_code": client_code,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "age_seconds": now - issued_at,
        "expires_in": expires_at - now,
    }


def _is_invalid_totp(error: RejectedError) -> bool:
    # AB1050 is undocumented; forum users see it for a bad TOTP (smartapi.md §2.1).
    return error.code == "AB1050" or "totp" in error.message.lower()


class BrokerSession:
    """The shared session: ``current()`` for tokens, ``call_with_session`` for calls."""

    def __init__(
        self,
        client: SmartApiClient,
        redis_client: redis.Redis,
        client_code: str,
        pin: str,
        totp_secret: str,
        lifetime_seconds: float,
        *,
        lock_timeout: float = 90.0,
        daily_cutoff: clock_time | None = DAILY_CUTOFF,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        require_credentials(client_code, pin, client.api_key, totp_secret)
        self.client = client
        self.client_code = client_code
        self._pin = pin
        self._totp = pyotp.TOTP(totp_secret)
        self.lifetime_seconds = lifetime_seconds
        self.daily_cutoff = daily_cutoff
        self._redis = redis_client
        self._key = keys.SESSION.format(client_code=client_code)
        self._lock_key = keys.SESSION_LOCK.format(client_code=client_code)
        self._release = redis_client.register_script(_RELEASE)
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._sleep = sleep
        self._thread_lock = threading.Lock()
        self.logins = 0  # done by this object; for tests and the status command
        self.refreshes = 0

    def __repr__(self) -> str:
        return (
            f"BrokerSession(client_code={self.client_code!r}, pin={mask(self._pin)}, "
            f"totp_secret={mask(self._totp.secret)})"
        )

    # --- reading ---------------------------------------------------------------------

    def _redis_call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except redis.RedisError as exc:
            raise TransientError(
                f"session store: Redis failed ({type(exc).__name__}: {exc})", route="session"
            ) from exc

    def stored(self) -> SessionTokens | None:
        """The tokens in Redis, expired or not; ``None`` when there are none."""
        # A decode_responses client: fields and values are str.
        raw = cast("dict[str, str]", self._redis_call(lambda: self._redis.hgetall(self._key)))
        try:
            return SessionTokens(
                jwt=raw["jwt"],
                refresh_token=raw["refresh_token"],
                feed_token=raw["feed_token"],
                issued_at=float(raw["issued_at"]),
                expires_at=float(raw["expires_at"]),
            )
        except (KeyError, ValueError):
            return None

    def _valid(self) -> SessionTokens | None:
        tokens = self.stored()
        if tokens is None or tokens.expired(self._clock()):
            return None
        return tokens

    def current(self) -> SessionTokens:
        """Tokens of a live session, logging in first when there is none."""
        tokens = self._valid()
        if tokens is None:
            tokens = self._renew(stale_jwt=None, refresh=False)
        return tokens

    def expires_in(self) -> float | None:
        """Seconds until the session is expected to end (negative once past); ``None``
        when there is no session."""
        tokens = self.stored()
        return None if tokens is None else tokens.expires_at - self._clock()

    def refresh_would_extend(self, margin: float = 60.0) -> bool:
        """Would tokens refreshed now end later than the stored ones? Not when both end
        at the same daily cut-off: then only a login after the cut-off helps."""
        tokens = self.stored()
        if tokens is None:
            return False
        now = self._clock()
        return session_end(now, self.lifetime_seconds, self.daily_cutoff) > (
            tokens.expires_at + margin
        )

    def age_seconds(self) -> float | None:
        tokens = self.stored()
        return None if tokens is None else self._clock() - tokens.issued_at

    def status(self) -> dict[str, object]:
        """What the status command shows; no secret in it."""
        return session_status(self._redis, self.client_code, now=self._clock())

    # --- renewing --------------------------------------------------------------------

    def login(self) -> SessionTokens:
        """A full TOTP login now, unless another process just did one."""
        return self._renew(stale_jwt=self._current_jwt(), refresh=False)

    def refresh(self) -> SessionTokens:
        """generateTokens (a full login if Angel refuses the refresh token)."""
        return self._renew(stale_jwt=self._current_jwt(), refresh=True)

    def invalidate(self, jwt: str) -> SessionTokens:
        """A call reported that ``jwt`` no longer works: refresh, unless the session has
        already moved on (another reporter was first). Returns the live tokens."""
        tokens = self._valid()
        if tokens is not None and tokens.jwt != jwt:
            return tokens
        return self._renew(stale_jwt=jwt, refresh=True)

    def _current_jwt(self) -> str | None:
        tokens = self.stored()
        return tokens.jwt if tokens else None

    def _renew(self, *, stale_jwt: str | None, refresh: bool) -> SessionTokens:
        """Under both locks: if someone replaced ``stale_jwt`` meanwhile, use theirs;
        otherwise refresh or log in and store the result."""
        with self._thread_lock, self._redis_lock():
            latest = self._valid()
            if latest is not None and latest.jwt != stale_jwt:
                self.client.set_jwt(latest.jwt)
                return latest
            stored = self.stored()
            if refresh and stored is not None and not stored.expired(self._clock()):
                tokens = self._refresh_locked(stored)
            else:
                tokens = self._login_locked()
            self.client.set_jwt(tokens.jwt)
            return tokens

    def _refresh_locked(self, stored: SessionTokens) -> SessionTokens:
        try:
            data = self.client.generate_tokens(stored.refresh_token, stored.jwt)
        except SessionExpiredError as error:
            log.warning("session: refresh refused (%s); logging in again", error)
            return self._login_locked()
        self.refreshes += 1
        tokens = self._store(data, issued_at=self._clock())
        log.info("session: tokens refreshed for %s", self.client_code)
        return tokens

    def _login_locked(self) -> SessionTokens:
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                data = self.client.login(self.client_code, self._pin, self._totp.now())
            except RejectedError as error:
                if not _is_invalid_totp(error):
                    raise
                if attempt >= 2:
                    raise ConfigurationError(
                        f"TOTP refused twice ({error}); check ANGEL_TOTP_SECRET and the host clock",
                        route="loginByPassword",
                        code=error.code,
                    ) from error
                wait = TOTP_STEP - (self._clock() % TOTP_STEP) + 1.0
                log.warning(
                    "session: TOTP refused (%s); retry %d of 1 in %.1fs, in the next window",
                    error,
                    attempt,
                    wait,
                )
                self._sleep(wait)
            except RateLimitedError as error:
                if attempt == attempts:
                    raise
                log.warning(
                    "session: login rate-limited (%s); retry %d of %d in %.1fs",
                    error,
                    attempt,
                    attempts - 1,
                    error.retry_after,
                )
                self._sleep(error.retry_after)
            else:
                self.logins += 1
                tokens = self._store(data, issued_at=self._clock())
                expires = datetime.fromtimestamp(tokens.expires_at, IST)
                log.info(
                    "session: logged in as %s; expected to expire %s IST",
                    self.client_code,
                    expires.strftime("%Y-%m-%d %H:%M"),
                )
                return tokens
        raise AssertionError("unreachable")

    def _store(self, data: dict, *, issued_at: float) -> SessionTokens:
        tokens = SessionTokens(
            jwt=data["jwtToken"],
            refresh_token=data["refreshToken"],
            feed_token=data.get("feedToken") or "",
            issued_at=issued_at,
            expires_at=session_end(issued_at, self.lifetime_seconds, self.daily_cutoff),
        )
        mapping: dict[FieldT, EncodableT] = {
            "jwt": tokens.jwt,
            "refresh_token": tokens.refresh_token,
            "feed_token": tokens.feed_token,
            "issued_at": repr(tokens.issued_at),
            "expires_at": repr(tokens.expires_at),
            "pid": os.getpid(),
        }

        def write() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._key)
            pipe.hset(self._key, mapping=mapping)
            pipe.pexpireat(self._key, int(tokens.expires_at * 1000))
            pipe.execute()

        self._redis_call(write)
        return tokens

    @contextmanager
    def _redis_lock(self) -> Iterator[None]:
        """The cross-process login lock; waits (polling) while another process holds it."""
        token = uuid.uuid4().hex
        ttl_ms = int(self._lock_timeout * 1000)
        deadline = time.monotonic() + self._lock_timeout
        while True:
            taken = self._redis_call(
                lambda: self._redis.set(self._lock_key, token, nx=True, px=ttl_ms)
            )
            # A retried SET can report "taken" when the first attempt set it for us.
            if taken or self._redis_call(lambda: self._redis.get(self._lock_key)) == token:
                break
            if time.monotonic() >= deadline:
                raise TransientError(
                    "another process has held the login lock too long", route="session"
                )
            time.sleep(0.02)
        try:
            yield
        finally:
            try:
                self._release(keys=[self._lock_key], args=[token])
            except redis.RedisError:
                log.warning("session: could not release the login lock; it expires by itself")

    # --- calling ---------------------------------------------------------------------

    def call_with_session(self, fn: Callable[[SmartApiClient], T]) -> T:
        """``fn(client)`` with a live JWT; on SessionExpiredError refresh once, retry once."""
        tokens = self.current()
        self.client.set_jwt(tokens.jwt)
        try:
            return fn(self.client)
        except SessionExpiredError as error:
            log.warning("session: %s; refreshing, then retry 1 of 1", error)
            tokens = self.invalidate(tokens.jwt)
            self.client.set_jwt(tokens.jwt)
            return fn(self.client)
