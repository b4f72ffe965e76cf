"""Run the simulator in a background thread, for tests and benchmarks.

    with start_simulator(seed=7, enforce_rate_limits=False) as sim:
        requests.post(sim.rest_url + "/rest/auth/...", ...)
        sim.fault("stall", seconds=3)
        assert sim.fault_log()[-1]["fault"] == "stall"
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pyotp

from simulator.config import DEMO_API_KEY, DEMO_CLIENT_CODE, DEMO_PIN, SimConfig
from simulator.rest import ROUTE_PATHS
from simulator.server import Simulator

T = TypeVar("T")


class SimulatorError(RuntimeError):
    """The simulator refused a control request (bad fault name or parameter) or is down.
    The test that asked has a bug or a timing problem to fix; nothing is retried."""


class RunningSimulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.simulator = Simulator(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)
        self._stopped = False

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        self._await(self.simulator.start(), timeout)

    def _await(self, coro: Any, timeout: float | None = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the simulator's loop, so it sees a consistent state."""

        async def run() -> T:
            return fn()

        return self._await(run(), 10.0)

    # --- addresses --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.simulator.port

    @property
    def rest_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/smart-stream"

    @property
    def order_ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/smart-order-update"

    @property
    def control_url(self) -> str:
        return f"{self.rest_url}/_sim"

    # --- control ----------------------------------------------------------------------

    def fault(self, name: str, **params: Any) -> dict[str, Any]:
        """Arm a fault through the control endpoint and return the simulator's answer."""
        body = json.dumps({"fault": name, **params}).encode()
        request = urllib.request.Request(
            f"{self.control_url}/faults", data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SimulatorError(exc.read().decode(errors="replace")) from exc
        except OSError as exc:
            raise SimulatorError(f"simulator control endpoint unreachable: {exc}") from exc

    def orders(self) -> list[dict[str, Any]]:
        return self._call(self.simulator.orders.book)

    def trades(self) -> list[dict[str, Any]]:
        return self._call(lambda: [dict(t) for t in self.simulator.orders.trades])

    def fault_log(self) -> list[dict[str, Any]]:
        return self._call(lambda: [dict(e) for e in self.simulator.faults.log])

    def stats(self) -> dict[str, Any]:
        return self._call(self.simulator.stats)

    def reset(self, sessions: bool = False) -> None:
        self._call(lambda: self.simulator.reset(sessions))

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Stand the paper market at another exchange time (affects hours, candles)."""
        self._call(lambda: self.simulator.set_clock(clock))

    def restart(self, down_seconds: float = 0.0, keep_sessions: bool = True) -> None:
        """Drop everything, stay down ``down_seconds``, listen again on the same port.
        Returns once the server accepts connections again."""
        self._await(self.simulator.restart(down_seconds, keep_sessions), down_seconds + 30)

    def client(self) -> DemoClient:
        return DemoClient(self.rest_url, totp_secret=self.config.totp_secret,
                          api_key=self.config.api_key)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._await(self.simulator.stop(), 15.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_simulator(config: SimConfig | None = None, **overrides: Any) -> RunningSimulator:
    """Start a simulator on its own thread and event loop; returns once it listens."""
    config = config or SimConfig()
    if overrides:
        config = config.with_overrides(**overrides)
    running = RunningSimulator(config)
    running._start()
    return running


class Reply:
    """One HTTP answer: status, headers, raw body and (when it parses) the JSON."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json: Any = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def data(self) -> Any:
        return self.json["data"] if isinstance(self.json, dict) else None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:200]!r})"


class DemoClient:
    """A bare SmartAPI REST client (urllib) for exercising the simulator itself.

    ``call("getOrderBook")`` sends the official SDK's headers; the bot has its own client.
    """

    def __init__(self, rest_url: str, totp_secret: str, api_key: str = DEMO_API_KEY) -> None:
        self.rest_url = rest_url
        self.totp_secret = totp_secret
        self.api_key: str | None = api_key
        self.jwt: str | None = None
        self.refresh_token: str | None = None
        self.feed_token: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json", "Accept": "application/json",
            "X-UserType": "USER", "X-SourceID": "WEB", "X-ClientLocalIP": "127.0.0.1",
            "X-ClientPublicIP": "127.0.0.1", "X-MACAddress": "aa:bb:cc:dd:ee:ff",
        }
        if self.api_key is not None:
            headers["X-PrivateKey"] = self.api_key
        if self.jwt is not None:
            headers["Authorization"] = f"Bearer {self.jwt}"
        return headers

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.rest_url + path, data=data, method=method,
            headers=headers if headers is not None else self.headers(),
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    def call(self, route: str, body: Any = None, suffix: str = "", **kwargs: Any) -> Reply:
        """A route by its SDK name; GETs carry the SDK's junk query string."""
        method, path = ROUTE_PATHS[route]
        path = path.replace("{uniqueorderid}", suffix)
        if method == "GET":
            return self.request("GET", path + "?%7B%7D", **kwargs)
        return self.request("POST", path, body if body is not None else {}, **kwargs)

    def totp(self) -> str:
        return pyotp.TOTP(self.totp_secret).now()

    def login(self, client_code: str = DEMO_CLIENT_CODE, pin: str = DEMO_PIN,
              totp: str | None = None) -> Reply:
        self.jwt = None
        reply = self.call("login", {"clientcode": client_code, "password": pin,
                                    "totp": totp or self.totp()})
        if reply.json and reply.json.get("status"):
            self.jwt = reply.data["jwtToken"]
            self.refresh_token = reply.data["refreshToken"]
            self.feed_token = reply.data["feedToken"]
        return reply
