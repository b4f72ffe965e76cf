"""Fault injection state and the fault log.

Faults are armed through the control endpoint (POST /_sim/faults). Time-boxed faults
(stall, blackhole, refuse_handshake) end on their own; counted faults (rest_error,
lose_order_response, bad_frames, reject_orders) are used up by the requests they hit.
Every fault armed and every request or frame a fault changed is appended to the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tradebot.market_hours import IST

# SDK-style route names the rest_error / lose_order_response faults accept, with aliases
# from the official SDKs. "*" matches every REST route.
ROUTES = (
    "login", "generateTokens", "logout", "getProfile", "getRMS", "placeOrder",
    "modifyOrder", "cancelOrder", "getOrderBook", "getTradeBook", "orderDetails",
    "getLtpData", "getMarketData", "getCandleData", "getPosition", "getHolding",
    "getAllHolding", "searchScrip", "scripMaster",
)
ALIASES = {
    "generateSession": "login", "generateToken": "generateTokens",
    "renewAccessToken": "generateTokens", "terminateSession": "logout",
    "rmsLimit": "getRMS", "orderBook": "getOrderBook", "tradeBook": "getTradeBook",
    "individual_order_details": "orderDetails", "ltpData": "getLtpData",
    "quote": "getMarketData", "position": "getPosition", "holding": "getHolding",
    "allholding": "getAllHolding", "placeOrderFullResponse": "placeOrder",
}
REST_KINDS = ("5xx", "AB1004", "rate_limit", "html", "delay", "truncated", "empty")
FRAME_KINDS = ("truncated", "unknown_mode")
FAULTS = (
    "drop_ws", "stall", "blackhole", "refuse_handshake", "rest_error",
    "lose_order_response", "expire_sessions", "bad_frames", "restart", "reject_orders",
    "clear",
)


class FaultError(ValueError):
    """A fault request the simulator cannot apply; the control endpoint answers 400."""


def canonical_route(name: str) -> str:
    route = ALIASES.get(name, name)
    if route != "*" and route not in ROUTES:
        raise FaultError(f"unknown route {name!r}; use one of {', '.join(ROUTES)} or '*'")
    return route


@dataclass
class RestRule:
    route: str
    kind: str
    remaining: int
    delay_seconds: float
    status: int

    def matches(self, route: str) -> bool:
        return self.remaining > 0 and self.route in ("*", route)


@dataclass
class LostOrderRule:
    route: str
    remaining: int
    mode: str  # "drop": close the connection; "hang": answer nothing for hang_seconds
    hang_seconds: float


class Faults:
    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.disarm()

    def disarm(self) -> None:
        """Forget every armed fault; the log stays."""
        self.withheld = 0  # market frames not sent during the current stall/blackhole
        self.stall_until = 0.0
        self.blackhole_until = 0.0
        self.refuse_until = 0.0
        self.refuse_status = 401
        self.rest_rules: list[RestRule] = []
        self.lost_orders: list[LostOrderRule] = []
        self.bad_frames: list[tuple[str, int]] = []
        self.reject_orders = 0
        self.reject_text = ""

    def record(self, event: str, fault: str, **details: Any) -> dict[str, Any]:
        now = time.time()
        entry = {
            "at": datetime.fromtimestamp(now, IST).isoformat(timespec="milliseconds"),
            "time": now,
            "event": event,  # "applied" or "affected"
            "fault": fault,
            **details,
        }
        self.log.append(entry)
        return entry

    # --- windows --------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        return time.monotonic() < max(self.stall_until, self.blackhole_until)

    @property
    def blackholed(self) -> bool:
        return time.monotonic() < self.blackhole_until

    @property
    def refusing(self) -> bool:
        return time.monotonic() < self.refuse_until

    def active(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "stall_seconds_left": max(0.0, self.stall_until - now),
            "blackhole_seconds_left": max(0.0, self.blackhole_until - now),
            "refuse_handshake_seconds_left": max(0.0, self.refuse_until - now),
            "rest_error": [vars(r) for r in self.rest_rules if r.remaining > 0],
            "lose_order_response": [vars(r) for r in self.lost_orders if r.remaining > 0],
            "bad_frames": [{"kind": k, "count": c} for k, c in self.bad_frames],
            "reject_orders": self.reject_orders,
        }

    # --- counted faults ---------------------------------------------------------------

    def take_rest_rule(self, route: str) -> RestRule | None:
        for rule in self.rest_rules:
            if rule.matches(route):
                rule.remaining -= 1
                return rule
        return None

    def take_lost_order(self, route: str) -> LostOrderRule | None:
        for rule in self.lost_orders:
            if rule.remaining > 0 and rule.route == route:
                rule.remaining -= 1
                return rule
        return None

    def take_bad_frames(self) -> list[tuple[str, int]]:
        taken, self.bad_frames = self.bad_frames, []
        return taken

    def take_reject(self) -> str | None:
        if self.reject_orders <= 0:
            return None
        self.reject_orders -= 1
        return self.reject_text


def number(params: dict[str, Any], name: str, default: float, low: float = 0.0) -> float:
    try:
        value = float(params.get(name, default))
    except (TypeError, ValueError) as exc:
        raise FaultError(f"{name} must be a number") from exc
    if value < low:
        raise FaultError(f"{name} must be >= {low}")
    return value
