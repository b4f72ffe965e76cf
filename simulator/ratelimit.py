"""Per-endpoint sliding-window rate limits (smartapi.md §2.2).

Only admitted requests count toward a window, so a client that waits out a rejection
gets in again; a burst early in a minute still blocks the rest of that minute.
"""

from __future__ import annotations

import time
from collections import deque

# route name: (per second, per minute, per hour); None = no limit in that window
LIMITS: dict[str, tuple[int | None, int | None, int | None]] = {
    "login": (1, None, None),
    "generateTokens": (1, None, 1000),
    "getProfile": (3, None, 1000),
    "logout": (1, None, None),
    "getRMS": (2, None, None),
    "placeOrder": (20, 500, 1000),
    "modifyOrder": (20, 500, 1000),
    "cancelOrder": (20, 500, 1000),
    "getOrderBook": (1, None, None),
    "getTradeBook": (1, None, None),
    "orderDetails": (10, 500, 5000),
    "getLtpData": (10, 500, 5000),
    "getMarketData": (10, 500, 5000),
    "getCandleData": (3, 180, 5000),
    "getPosition": (1, None, None),
    "getHolding": (1, None, None),
    "getAllHolding": (1, None, None),
    "searchScrip": (1, None, None),
}
_SPANS = (1.0, 60.0, 3600.0)

RATE_LIMIT_TEXT = "Access denied because of exceeding access rate"


class RateLimiter:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._admitted: dict[str, deque[float]] = {}

    def allow(self, route: str, now: float | None = None) -> bool:
        """Admit and record one request, or return False when a window is full."""
        limits = LIMITS.get(route)
        if not self.enabled or limits is None:
            return True
        now = time.monotonic() if now is None else now
        stamps = self._admitted.setdefault(route, deque())
        while stamps and now - stamps[0] >= 3600.0:
            stamps.popleft()
        for cap, span in zip(limits, _SPANS, strict=True):
            if cap is None:
                continue
            # Stamps are in time order, so count from the newest end.
            recent = 0
            for stamp in reversed(stamps):
                if now - stamp >= span:
                    break
                recent += 1
                if recent >= cap:
                    return False
        stamps.append(now)
        return True

    def reset(self) -> None:
        self._admitted.clear()
