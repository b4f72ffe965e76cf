"""The control endpoint under /_sim: arm faults, read the fault log, orders and stats.

POST /_sim/faults       {"fault": NAME, ...params}  -> {"ok": true, "fault": NAME, ...}
GET  /_sim/faults       faults currently armed
GET  /_sim/faults/log   every fault applied and every request or frame it changed
GET  /_sim/orders       the order book as getOrderBook lists it (a list, [] when empty)
GET  /_sim/trades       the trade book
GET  /_sim/stats        counters (connections, frames, logins, route calls, ...)
POST /_sim/reset        {"sessions": false} clears faults, log, orders, windows, counters
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.faults import (
    FAULTS,
    FRAME_KINDS,
    REST_KINDS,
    FaultError,
    LostOrderRule,
    RestRule,
    canonical_route,
    number,
)

if TYPE_CHECKING:
    from simulator.server import Simulator

logger = logging.getLogger(__name__)


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json")


class Control:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_sim/faults", self.post_fault)
        app.router.add_get("/_sim/faults", self.get_faults)
        app.router.add_get("/_sim/faults/log", self.get_log)
        app.router.add_get("/_sim/orders", self.get_orders)
        app.router.add_get("/_sim/trades", self.get_trades)
        app.router.add_get("/_sim/stats", self.get_stats)
        app.router.add_post("/_sim/reset", self.post_reset)

    async def post_fault(self, request: web.Request) -> web.Response:
        try:
            params = json.loads(await request.read() or b"{}")
            if not isinstance(params, dict):
                raise FaultError("the body must be a JSON object")
            name = str(params.pop("fault", ""))
            return _reply(self.apply(name, params))
        except (ValueError, FaultError) as exc:
            return _reply({"ok": False, "error": str(exc), "faults": list(FAULTS)}, 400)

    async def get_faults(self, request: web.Request) -> web.Response:
        return _reply({"faults": list(FAULTS), "active": self.sim.faults.active()})

    async def get_log(self, request: web.Request) -> web.Response:
        return _reply(self.sim.faults.log)

    async def get_orders(self, request: web.Request) -> web.Response:
        return _reply(self.sim.orders.book())

    async def get_trades(self, request: web.Request) -> web.Response:
        return _reply(self.sim.orders.trades)

    async def get_stats(self, request: web.Request) -> web.Response:
        return _reply(self.sim.stats())

    async def post_reset(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = {}
        self.sim.reset(sessions=bool(isinstance(body, dict) and body.get("sessions")))
        return _reply({"ok": True, "reset": True})

    # --- faults -----------------------------------------------------------------------

    def apply(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Arm one fault; raises FaultError (answered 400) for a bad name or parameter."""
        handler = getattr(self, f"_fault_{name}", None)
        if name not in FAULTS or handler is None:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        applied = handler(params)
        self.sim.faults.record("applied", name, **applied)
        logger.warning("fault %s applied: %s", name, applied)
        return {"ok": True, "fault": name, **applied}

    def _fault_drop_ws(self, params: dict[str, Any]) -> dict[str, Any]:
        dropped = self.sim.streams.drop_market()
        if params.get("include_order_updates"):
            for conn in list(self.sim.streams.orders):
                conn.abort()
                dropped += 1
        return {"connections": dropped}

    def _window(self, params: dict[str, Any], default: float) -> tuple[float, float]:
        seconds = number(params, "seconds", default)
        return seconds, time.monotonic() + seconds

    def _fault_stall(self, params: dict[str, Any]) -> dict[str, Any]:
        seconds, until = self._window(params, 10.0)
        self.sim.faults.stall_until = until
        return {"seconds": seconds}

    def _fault_blackhole(self, params: dict[str, Any]) -> dict[str, Any]:
        seconds, until = self._window(params, 10.0)
        self.sim.faults.blackhole_until = until
        return {"seconds": seconds}

    def _fault_refuse_handshake(self, params: dict[str, Any]) -> dict[str, Any]:
        seconds, until = self._window(params, 10.0)
        status = int(number(params, "status", 401))
        if status not in (401, 403, 429, 500, 502, 503):
            raise FaultError("status must be one of 401, 403, 429, 500, 502, 503")
        self.sim.faults.refuse_until = until
        self.sim.faults.refuse_status = status
        return {"seconds": seconds, "status": status}

    def _fault_rest_error(self, params: dict[str, Any]) -> dict[str, Any]:
        route = canonical_route(str(params.get("route", "*")))
        kind = str(params.get("kind", "5xx"))
        if kind not in REST_KINDS:
            raise FaultError(f"kind must be one of {', '.join(REST_KINDS)}")
        count = int(number(params, "count", 1, low=1))
        delay = number(params, "delay_seconds", 10.0)
        status = int(number(params, "status", 0))
        self.sim.faults.rest_rules.append(RestRule(route, kind, count, delay, status))
        return {"route": route, "kind": kind, "count": count, "delay_seconds": delay,
                "status": status}

    def _fault_lose_order_response(self, params: dict[str, Any]) -> dict[str, Any]:
        route = canonical_route(str(params.get("route", "placeOrder")))
        if route not in ("placeOrder", "modifyOrder", "cancelOrder"):
            raise FaultError("route must be placeOrder, modifyOrder or cancelOrder")
        mode = str(params.get("mode", "drop"))
        if mode not in ("drop", "hang"):
            raise FaultError("mode must be drop or hang")
        count = int(number(params, "count", 1, low=1))
        hang = number(params, "hang_seconds", 30.0)
        self.sim.faults.lost_orders.append(LostOrderRule(route, count, mode, hang))
        return {"route": route, "count": count, "mode": mode, "hang_seconds": hang}

    def _fault_expire_sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        expired = self.sim.sessions.expire_all()
        dropped = self.sim.streams.drop_all() if params.get("drop_streams") else 0
        return {"sessions": expired, "connections": dropped}

    def _fault_bad_frames(self, params: dict[str, Any]) -> dict[str, Any]:
        kind = str(params.get("kind", "truncated"))
        if kind not in FRAME_KINDS:
            raise FaultError(f"kind must be one of {', '.join(FRAME_KINDS)}")
        count = int(number(params, "count", 1, low=1))
        self.sim.faults.bad_frames.append((kind, count))
        return {"kind": kind, "count": count}

    def _fault_restart(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.sim.restart_pending:
            raise FaultError("a restart is already in progress")
        down = number(params, "down_seconds", 0.0)
        keep = bool(params.get("keep_sessions", True))
        self.sim.schedule_restart(down, keep)
        return {"down_seconds": down, "keep_sessions": keep, "port": self.sim.port}

    def _fault_reject_orders(self, params: dict[str, Any]) -> dict[str, Any]:
        count = int(number(params, "count", 1, low=1))
        text = str(params.get("text") or "Your order has been rejected by the exchange (RMS)")
        self.sim.faults.reject_orders += count
        self.sim.faults.reject_text = text
        return {"count": count, "text": text}

    def _fault_clear(self, params: dict[str, Any]) -> dict[str, Any]:
        self.sim.faults.disarm()
        return {}
