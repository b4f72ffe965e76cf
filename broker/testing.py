"""Test helpers for the broker adapter: a scriptable fake Angel One REST server.

``FakeAngel`` is a real HTTP server on 127.0.0.1 (random port, its own thread). It knows
just enough of SmartAPI to log in with a TOTP, rotate tokens and answer a few secure
routes, and it can be told to answer any route with any shape instead: envelope A or B,
403 text, an HTML page, an empty or truncated body, a 5xx, a delay (read timeout) or a
dropped connection. It records every request it saw. It is not the simulator (that is
``simulator/``); it exists so the adapter's tests can break things precisely.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pyotp

ROUTE_BY_PATH_END = {
    "loginByPassword": "loginByPassword",
    "generateTokens": "generateTokens",
    "logout": "logout",
    "getProfile": "getProfile",
    "getRMS": "getRMS",
    "placeOrder": "placeOrder",
    "modifyOrder": "modifyOrder",
    "cancelOrder": "cancelOrder",
    "getOrderBook": "getOrderBook",
    "getTradeBook": "getTradeBook",
    "getLtpData": "getLtpData",
    "quote": "quote",
    "getCandleData": "getCandleData",
    "getPosition": "getPosition",
    "getHolding": "getHolding",
    "searchScrip": "searchScrip",
}


@dataclass
class Reply:
    """One scripted answer. ``drop`` closes the socket after reading the request;
    ``declared_length`` sends a Content-Length larger than the body (a cut-off body)."""

    status: int = 200
    body: str | bytes | dict | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False
    declared_length: int | None = None


def envelope_a(data: Any = None, *, ok: bool = True, code: str = "", message: str = "") -> dict:
    return {
        "status": ok,
        "message": message or ("SUCCESS" if ok else "error"),
        "errorcode": code,
        "data": data,
    }


def envelope_b(code: str, message: str = "Invalid Token") -> dict:
    return {"success": False, "message": message, "errorCode": code, "data": ""}


@dataclass
class Seen:
    route: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _State:
    jwts: set[str] = field(default_factory=set)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh -> jwt
    logins: int = 0
    refreshes: int = 0


class FakeAngel:
    def __init__(
        self,
        *,
        client_code: str = "T0001",
        pin: str = "4321",
        api_key: str = "test-api-key-123",
        totp_secret: str | None = None,
        login_delay: float = 0.0,
    ) -> None:
        self.client_code = client_code
        self.pin = pin
        self.api_key = api_key
        self.totp_secret = totp_secret or pyotp.random_base32()
        self.login_delay = login_delay
        self.requests: list[Seen] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.state = _State()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        # An AF_INET server: the address is (host, port).
        host, port = cast("tuple[str, int]", self._server.server_address)[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAngel:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAngel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ---------------------------------------------------------------------

    def script(self, route: str, *replies: Reply) -> None:
        """Answer the next calls to ``route`` with ``replies``, in order, then normally."""
        with self._lock:
            self.scripts.setdefault(route, []).extend(replies)

    def expire_all(self) -> None:
        """Every JWT and refresh token stops working, as at Angel's daily cut-off."""
        with self._lock:
            self.state.jwts.clear()
            self.state.refresh_tokens.clear()

    def seen(self, route: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.route == route]

    # --- default behaviour ---------------------------------------------------------------

    def _issue(self) -> dict[str, str]:
        jwt = "eyJhbGciOiJIUzUxMiJ9." + secrets.token_urlsafe(24) + "." + secrets.token_urlsafe(16)
        refresh = "eyJyZWZyZXNoIjoxfQ." + secrets.token_urlsafe(24) + ".sig"
        self.state.jwts.add(jwt)
        self.state.refresh_tokens[refresh] = jwt
        return {"jwtToken": jwt, "refreshToken": refresh, "feedToken": secrets.token_hex(8)}

    def _default(self, seen: Seen) -> Reply:
        if seen.headers.get("x-privatekey") != self.api_key:
            return Reply(body=envelope_b("AG8004", "Invalid API Key"))
        body = seen.body if isinstance(seen.body, dict) else {}
        if seen.route == "loginByPassword":
            time.sleep(self.login_delay)
            if body.get("clientcode") != self.client_code or body.get("password") != self.pin:
                return Reply(body=envelope_a(ok=False, code="AB1000", message="Invalid creds"))
            if not pyotp.TOTP(self.totp_secret).verify(str(body.get("totp")), valid_window=1):
                return Reply(body=envelope_a(ok=False, code="AB1050", message="Invalid totp"))
            with self._lock:
                self.state.logins += 1
                return Reply(body=envelope_a(self._issue()))
        jwt = seen.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            if jwt not in self.state.jwts:
                return Reply(body=envelope_b("AG8001"))
            if seen.route == "generateTokens":
                old = self.state.refresh_tokens.pop(str(body.get("refreshToken")), None)
                if old is None:
                    return Reply(body=envelope_a(ok=False, code="AB8050", message="bad refresh"))
                self.state.jwts.discard(old)
                self.state.refreshes += 1
                return Reply(body=envelope_a(self._issue()))
        if seen.route == "getProfile":
            return Reply(body=envelope_a({"clientcode": self.client_code, "name": "Test"}))
        if seen.route in ("getOrderBook", "getTradeBook", "getPosition", "getHolding"):
            return Reply(body=envelope_a(None))
        if seen.route in ("getCandleData", "searchScrip"):
            return Reply(body=envelope_a([]))
        if seen.route == "placeOrder":
            number = f"{len(self.seen('placeOrder')):06d}"
            data = {
                "script": body.get("tradingsymbol"),
                "orderid": number,
                "uniqueorderid": "u-" + number,
            }
            return Reply(body=envelope_a(data))
        if seen.route == "quote":
            tokens = body.get("exchangeTokens", {})
            fetched = [
                {"exchange": ex, "symbolToken": t, "ltp": 1.0}
                for ex, toks in tokens.items()
                for t in toks
            ]
            return Reply(body=envelope_a({"fetched": fetched, "unfetched": []}))
        return Reply(body=envelope_a({"route": seen.route}))

    # --- HTTP ------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                path = self.path.split("?", 1)[0]
                last = path.rstrip("/").rsplit("/", 1)[-1]
                route = ROUTE_BY_PATH_END.get(last, "orderDetails" if "/details/" in path else last)
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(route, self.command, self.path, headers, body)
                with fake._lock:
                    fake.requests.append(seen)
                    queue = fake.scripts.get(route)
                    reply = queue.pop(0) if queue else None
                if reply is None:
                    reply = fake._default(seen)
                self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                payload = reply.body
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload)
                data = payload.encode() if isinstance(payload, str) else (payload or b"")
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(reply.declared_length or len(data)))
                if reply.declared_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a read timeout)

            do_GET = _serve
            do_POST = _serve

        return Handler
