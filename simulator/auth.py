"""Sessions: login with PIN + TOTP, three JWT-shaped tokens, rotation and expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

import pyotp

from simulator.config import SimConfig


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict, key: bytes) -> str:
    """An HS512 JWT; it looks like Angel's so that log-masking rules are exercised."""
    header = _b64(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha512).digest()
    return f"{header}.{payload}.{_b64(signature)}"


@dataclass
class Session:
    client_code: str
    jwt: str
    refresh_token: str
    feed_token: str
    issued_at: float
    expires_at: float

    def alive(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) < self.expires_at


class Sessions:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._key = secrets.token_bytes(32)
        self.by_jwt: dict[str, Session] = {}
        self.by_refresh: dict[str, Session] = {}
        self.by_feed: dict[str, Session] = {}
        self.killed: set[str] = set()  # jwt and feed tokens ended by expire_all
        self.logins = 0
        self.refreshes = 0

    # --- credentials --------------------------------------------------------------------

    def check_pin(self, client_code: str, pin: str) -> bool:
        return hmac.compare_digest(str(client_code), self.config.client_code) and (
            hmac.compare_digest(str(pin), self.config.pin)
        )

    def check_totp(self, code: str) -> bool:
        code = str(code).strip()
        if len(code) != 6 or not code.isdigit():
            return False
        return pyotp.TOTP(self.config.totp_secret).verify(code, valid_window=1)

    def check_api_key(self, api_key: str | None) -> bool:
        return api_key is not None and hmac.compare_digest(api_key, self.config.api_key)

    # --- sessions --------------------------------------------------------------------

    def issue(self, client_code: str) -> Session:
        now = time.time()
        expires = now + self.config.token_lifetime_seconds
        nonce = secrets.token_hex(16)
        base = {"username": client_code, "iat": int(now), "exp": int(expires)}
        session = Session(
            client_code=client_code,
            jwt=make_jwt(
                {**base, "roles": [], "usertype": "USER", "token": nonce, "source": "SPA"},
                self._key,
            ),
            refresh_token=make_jwt({**base, "token": "REFRESH-TOKEN", "n": nonce}, self._key),
            feed_token=make_jwt({**base, "token": "FEED-TOKEN", "n": nonce}, self._key),
            issued_at=now,
            expires_at=expires,
        )
        self.by_jwt[session.jwt] = session
        self.by_refresh[session.refresh_token] = session
        self.by_feed[session.feed_token] = session
        return session

    def login(self, client_code: str) -> Session:
        self.logins += 1
        return self.issue(client_code)

    def rotate(self, session: Session) -> Session:
        """New jwt, refresh and feed tokens; the old three stop working."""
        self.revoke(session)
        self.refreshes += 1
        return self.issue(session.client_code)

    def revoke(self, session: Session) -> None:
        self.by_jwt.pop(session.jwt, None)
        self.by_refresh.pop(session.refresh_token, None)
        self.by_feed.pop(session.feed_token, None)

    def expire_all(self) -> int:
        """End every session now; their tokens are remembered as killed by a fault."""
        count = len(self.by_jwt)
        self.killed.update(self.by_jwt)
        self.killed.update(self.by_feed)
        self.by_jwt.clear()
        self.by_refresh.clear()
        self.by_feed.clear()
        return count

    def _alive(self, table: dict[str, Session], value: str | None) -> Session | None:
        session = table.get(value or "")
        if session is None:
            return None
        if not session.alive():
            self.revoke(session)
            return None
        return session

    def from_jwt(self, jwt: str | None) -> Session | None:
        return self._alive(self.by_jwt, jwt)

    def from_refresh(self, refresh_token: str | None) -> Session | None:
        return self._alive(self.by_refresh, refresh_token)

    def from_feed(self, feed_token: str | None) -> Session | None:
        return self._alive(self.by_feed, feed_token)

    @property
    def active(self) -> int:
        return sum(1 for s in self.by_jwt.values() if s.alive())


def bearer(value: str | None) -> str | None:
    """The token inside an Authorization header, with or without the Bearer prefix."""
    if not value:
        return None
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None
