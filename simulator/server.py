"""The simulator process: one aiohttp server, the market engine, and their state.

State (market, sessions, orders, fault log) lives on ``Simulator`` and survives
``restart``: only the listening socket and the connections are torn down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from simulator.auth import Sessions
from simulator.candles import CandleModel
from simulator.config import SimConfig
from simulator.control import Control
from simulator.faults import Faults
from simulator.market import Market
from simulator.orders import OrderBook
from simulator.ratelimit import RateLimiter
from simulator.rest import Rest
from simulator.stream import Streams
from tradebot.market_hours import IST, is_market_open

logger = logging.getLogger(__name__)


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.market = Market(self.config)
        self.candles = CandleModel(
            self.config.seed, {token: price for _, token, price in self.config.instruments}
        )
        self.sessions = Sessions(self.config)
        # Exchange time; tests replace it to stand the paper market at a chosen moment.
        self.clock: Callable[[], datetime] = lambda: datetime.now(IST)
        self.orders = OrderBook(self.config, self.market, lambda: self.clock())
        self.faults = Faults()
        self.limiter = RateLimiter(self.config.enforce_rate_limits)
        self.streams = Streams(self)
        self.rest = Rest(self)
        self.control = Control(self)
        self.port = self.config.port
        self.route_calls: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.restarts = 0
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None
        self._engine: asyncio.Task | None = None
        self._restarting: asyncio.Task | None = None
        self._rng = random.Random(f"{self.config.seed}:schedule")
        self._market_open = True
        self._open_checked = 0.0

    # --- lifecycle --------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        self.rest.add_routes(app)
        app.router.add_get("/smart-stream", self.streams.market_handler)
        app.router.add_get("/smart-order-update", self.streams.order_handler)
        self.control.add_routes(app)
        return app

    async def start(self) -> None:
        await self._listen()
        if self._engine is None:
            self._engine = asyncio.get_running_loop().create_task(self._run_engine())
        logger.info("simulator listening on http://%s:%d (seed %d, %d instruments)",
                    self.config.host, self.port, self.config.seed,
                    len(self.market.instruments))

    async def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        sock.listen(512)
        sock.setblocking(False)
        runner = web.AppRunner(self.build_app(), shutdown_timeout=0.5, access_log=None,
                               handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def _unlisten(self) -> None:
        runner, self._runner = self._runner, None
        self.streams.drop_all()
        if runner is not None:
            await runner.cleanup()

    async def stop(self) -> None:
        if self._restarting is not None:
            self._restarting.cancel()
        if self._engine is not None:
            self._engine.cancel()
            try:
                await self._engine
            except asyncio.CancelledError:
                pass
            self._engine = None
        await self._unlisten()

    async def restart(self, down_seconds: float = 0.0, keep_sessions: bool = True) -> None:
        """Close every connection and the listening socket, stay down, listen again
        on the same port. Orders and the market survive; sessions unless told not to."""
        self.restarts += 1
        logger.warning("simulator restarting: down for %.1f s", down_seconds)
        await self._unlisten()
        if not keep_sessions:
            self.sessions.expire_all()
        await asyncio.sleep(down_seconds)
        await self._listen()
        logger.info("simulator back on port %d", self.port)

    def schedule_restart(self, down_seconds: float, keep_sessions: bool) -> None:
        async def later() -> None:
            await asyncio.sleep(0.05)  # let the control answer go out first
            await self.restart(down_seconds, keep_sessions)

        self._restarting = asyncio.get_running_loop().create_task(later())

    @property
    def restart_pending(self) -> bool:
        return self._restarting is not None and not self._restarting.done()

    @property
    def listening(self) -> bool:
        return self._runner is not None

    # --- the market engine ------------------------------------------------------------

    async def _run_engine(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.config.tick_rate if self.config.tick_rate > 0 else math.inf
        now = loop.time()
        for state in self.market.instruments.values():
            state.next_due = now + self._rng.uniform(0.0, min(period, 1.0))
        interval = self.engine_interval
        while True:
            await asyncio.sleep(interval)
            try:
                self.step(loop.time(), period)
            except Exception:  # the engine must outlive one bad step; say so, go on
                logger.exception("market engine step failed; continuing")

    @property
    def engine_interval(self) -> float:
        """Seconds between engine steps: short enough that a step makes about
        ``engine_step_ticks`` updates, within [engine_min_interval, engine_interval]."""
        config = self.config
        total_rate = config.tick_rate * len(self.market.instruments)
        if total_rate <= 0:
            return config.engine_interval
        wanted = config.engine_step_ticks / total_rate
        return min(config.engine_interval, max(config.engine_min_interval, wanted))

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Stand the simulator at another exchange time (tests of market hours)."""
        self.clock = clock
        self._open_checked = 0.0

    def market_open(self) -> bool:
        if self.config.market_always_open:
            return True
        now = time.monotonic()
        if now - self._open_checked >= 1.0 or self._open_checked == 0.0:
            self._market_open = is_market_open(self.clock())
            self._open_checked = now
        return self._market_open

    def step(self, now: float, period: float) -> None:
        is_open = self.market_open()
        if is_open and period != math.inf:
            now_ms = int(time.time() * 1000)
            # Catch up to four longest steps' worth of a late engine, then skip the rest.
            cap = max(4, int(self.config.engine_interval / period * 4) + 1)
            publish = self.streams.publish
            uniform = self._rng.uniform
            for state in self.market.instruments.values():
                done = 0
                while state.next_due <= now and done < cap:
                    state.advance(now_ms)
                    publish(state)
                    done += 1
                    state.next_due += period * uniform(0.5, 1.5)
                if state.next_due <= now:  # far behind (a slow host): skip the backlog
                    state.next_due = now + period
                self.market.updates += done
        self.orders.match(is_open)
        self.streams.flush()

    # --- views ------------------------------------------------------------------------

    def count_call(self, route: str) -> None:
        self.route_calls[route] += 1

    def count_rate_limited(self, route: str) -> None:
        self.rate_limited[route] += 1

    def scrip_master(self) -> list[dict[str, str]]:
        return [
            {
                "token": s.token, "symbol": s.symbol, "name": s.symbol.rsplit("-", 1)[0],
                "expiry": "", "strike": "-1.000000", "lotsize": "1", "instrumenttype": "",
                "exch_seg": s.exchange, "tick_size": "5.000000",
            }
            for s in self.market.instruments.values()
        ]

    def stats(self) -> dict[str, Any]:
        streams = self.streams
        return {
            "port": self.port,
            "listening": self.listening,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "ws_connections": len(streams.market),
            "order_ws_connections": len(streams.orders),
            "ws_rejected_connections": streams.rejected_connections,
            "subscriptions": sum(c.token_count for c in streams.market),
            "frames_sent": streams.frames_sent,
            "frames_dropped": streams.frames_dropped,
            "bytes_sent": streams.bytes_sent,
            "market_updates": self.market.updates,
            "logins": self.sessions.logins,
            "token_refreshes": self.sessions.refreshes,
            "active_sessions": self.sessions.active,
            "route_calls": dict(self.route_calls),
            "rate_limited": dict(self.rate_limited),
            "orders": len(self.orders.orders),
            "trades": len(self.orders.trades),
            "restarts": self.restarts,
            "faults_logged": len(self.faults.log),
        }

    def reset(self, sessions: bool = False) -> None:
        self.faults = Faults()
        self.sessions.killed.clear()
        self.orders.clear()
        self.limiter.reset()
        self.route_calls.clear()
        self.rate_limited.clear()
        if sessions:
            self.sessions.expire_all()

    def apply_fault(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.control.apply(name, params)
