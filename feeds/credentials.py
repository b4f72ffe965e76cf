"""What a feed connection needs to authenticate, taken from the shared broker session.

The session (broker.session) keeps the tokens in Redis for every process and lets only
one process log in at a time; the feed asks it for the current tokens before each
connection attempt and for a refresh after a 401/403 handshake.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedCredentials:
    client_code: str
    api_key: str
    jwt: str = field(repr=False)
    feed_token: str = field(repr=False)

    def headers(self) -> list[str]:
        """Handshake headers of the smart-stream endpoint (smartapi.md §3.1)."""
        bearer = self.jwt if self.jwt.startswith("Bearer ") else f"Bearer {self.jwt}"
        return [
            f"Authorization: {bearer}",
            f"x-api-key: {self.api_key}",
            f"x-client-code: {self.client_code}",
            f"x-feed-token: {self.feed_token}",
        ]


class CredentialSource(Protocol):
    def current(self) -> FeedCredentials:
        """The tokens to connect with now; logs in first if there is no session."""
        ...

    def refresh(self, stale: FeedCredentials | None) -> FeedCredentials:
        """New tokens after the server refused ``stale``. Shared across processes: when
        another process already replaced them, its tokens are returned, no new login."""
        ...


class CredentialsUnavailable(RuntimeError):
    """No usable session (login failed, the broker or Redis is down). The feed backs off
    and asks again on the next attempt."""


class SessionCredentials:
    """Adapter from broker.session.BrokerSession to what the feed needs.

    When the session store cannot be read (Redis down) but a connection must be made,
    the tokens of the last good answer are used: they are usually still valid, and a
    401 says when they are not.
    """

    def __init__(self, session=None) -> None:
        self._session = session
        self._last: FeedCredentials | None = None

    def _get_session(self):
        if self._session is None:
            from broker import factory

            self._session = factory.get_session()
        return self._session

    def current(self) -> FeedCredentials:
        try:
            creds = _from_tokens(self._get_session().current())
        except Exception as exc:  # the session's own errors say why; the feed retries
            if self._last is not None:
                log.warning("session unavailable (%s); connecting with the last tokens",
                            exc.__class__.__name__)
                return self._last
            raise CredentialsUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
        self._last = creds
        return creds

    def refresh(self, stale: FeedCredentials | None) -> FeedCredentials:
        session = self._get_session()
        try:
            if stale is not None:
                tokens = session.invalidate(stale.jwt)
            else:
                tokens = session.refresh()
        except Exception as exc:
            raise CredentialsUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
        self._last = _from_tokens(tokens)
        return self._last


def _from_tokens(tokens) -> FeedCredentials:
    from django.conf import settings

    return FeedCredentials(
        client_code=settings.ANGEL_CLIENT_CODE or "",
        api_key=settings.ANGEL_API_KEY or "",
        jwt=tokens.jwt,
        feed_token=tokens.feed_token,
    )
