"""Feed worker settings, read once from django.conf.settings (with defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from feeds.backoff import BackoffPolicy


@dataclass(frozen=True)
class FeedConfig:
    url: str
    mode: int = 2
    watchdog_seconds: float = 15.0  # no tick at all for this long: reconnect
    quiet_seconds: float = 60.0  # one instrument silent this long while others flow
    ping_interval: float = 10.0  # text "ping"
    pong_timeout: float = 5.0
    ws_ping_interval: float = 10.0  # RFC 6455 ping frames, checked by websocket-client
    ws_ping_timeout: float = 5.0
    connect_timeout: float = 5.0  # TCP connect, handshake and partial frames
    auth_refresh_interval: float = 30.0  # at most one token refresh per this long
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    @classmethod
    def from_settings(cls, **overrides) -> FeedConfig:
        from django.conf import settings

        def setting(name: str, default):
            return getattr(settings, name, default)

        values = {
            "url": settings.ANGEL_WS_URL,
            "mode": setting("FEED_MODE", 2),
            "watchdog_seconds": float(setting("FEED_WATCHDOG_SECONDS", 15.0)),
            "quiet_seconds": float(setting("FEED_QUIET_SECONDS", 60.0)),
            "ping_interval": float(setting("FEED_PING_SECONDS", 10.0)),
            "pong_timeout": float(setting("FEED_PONG_TIMEOUT_SECONDS", 5.0)),
            "connect_timeout": float(setting("FEED_CONNECT_TIMEOUT_SECONDS", 5.0)),
            "backoff": BackoffPolicy(
                cap=float(setting("FEED_BACKOFF_CAP_SECONDS", 30.0)),
                healthy_seconds=float(setting("FEED_HEALTHY_SECONDS", 30.0)),
            ),
        }
        values.update(overrides)
        return cls(**values)
