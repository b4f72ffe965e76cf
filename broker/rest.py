"""SmartAPI REST client: one pooled HTTP session, exact headers, every answer translated.

Each method returns the envelope's ``data`` (lists for the books, never ``None``) or
raises one of ``broker.errors``. Reads that fail transiently are retried here a couple of
times with backoff; order calls never are (an unknown outcome is ``AmbiguousError``).
The client knows nothing about Django; ``broker.factory`` builds it from settings.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from broker.errors import (
    EMPTY_RESULT_CODES,
    NON_IDEMPOTENT_ROUTES,
    ProtocolError,
    RateLimitedError,
    RejectedError,
    SessionExpiredError,
    TransientError,
    from_request_exception,
    parse,
)
from broker.limiter import RateLimiter, RateLimitTimeout, endpoint_for
from tradebot.env import mask
from tradebot.market_hours import IST, require_aware

log = logging.getLogger(__name__)

# route name -> (HTTP method, path, needs the JWT)
ROUTES: dict[str, tuple[str, str, bool]] = {
    "loginByPassword": ("POST", "/rest/auth/angelbroking/user/v1/loginByPassword", False),
    "generateTokens": ("POST", "/rest/auth/angelbroking/jwt/v1/generateTokens", True),
    "logout": ("POST", "/rest/secure/angelbroking/user/v1/logout", True),
    "getProfile": ("GET", "/rest/secure/angelbroking/user/v1/getProfile", True),
    "getRMS": ("GET", "/rest/secure/angelbroking/user/v1/getRMS", True),
    "placeOrder": ("POST", "/rest/secure/angelbroking/order/v1/placeOrder", True),
    "modifyOrder": ("POST", "/rest/secure/angelbroking/order/v1/modifyOrder", True),
    "cancelOrder": ("POST", "/rest/secure/angelbroking/order/v1/cancelOrder", True),
    "getOrderBook": ("GET", "/rest/secure/angelbroking/order/v1/getOrderBook", True),
    "getTradeBook": ("GET", "/rest/secure/angelbroking/order/v1/getTradeBook", True),
    "orderDetails": ("GET", "/rest/secure/angelbroking/order/v1/details/", True),
    "getLtpData": ("POST", "/rest/secure/angelbroking/order/v1/getLtpData", True),
    "quote": ("POST", "/rest/secure/angelbroking/market/v1/quote", True),
    "getCandleData": ("POST", "/rest/secure/angelbroking/historical/v1/getCandleData", True),
    "getPosition": ("GET", "/rest/secure/angelbroking/order/v1/getPosition", True),
    "getHolding": ("GET", "/rest/secure/angelbroking/portfolio/v1/getHolding", True),
    "searchScrip": ("POST", "/rest/secure/angelbroking/order/v1/searchScrip", True),
}

# Calendar days one candle request may span, per interval (smartapi.md §1.8).
CANDLE_INTERVAL_DAYS = {
    "ONE_MINUTE": 30,
    "THREE_MINUTE": 60,
    "FIVE_MINUTE": 100,
    "TEN_MINUTE": 100,
    "FIFTEEN_MINUTE": 200,
    "THIRTY_MINUTE": 200,
    "ONE_HOUR": 400,
    "ONE_DAY": 2000,
}
QUOTE_MODES = ("LTP", "OHLC", "FULL")
QUOTE_TOKENS_PER_REQUEST = 50
ORDERTAG_MAX = 19  # "ordertag must be < 20 characters": Angel answers AB4008 at 20
# Read routes that a failed call may simply repeat (login and refresh are the session's).
_RETRYABLE_READS = frozenset(
    route
    for route, (_, _, secure) in ROUTES.items()
    if secure and route not in NON_IDEMPOTENT_ROUTES and route not in ("generateTokens", "logout")
)


def _strings(params: Mapping[str, Any]) -> dict[str, Any]:
    """Order bodies as the SDK samples send them: numbers as strings, ``None`` dropped."""
    body: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            raise TypeError(f"order field {key!r} cannot be a bool")
        body[key] = str(value) if isinstance(value, int | float) else value
    return body


def candle_time(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm`` in IST, as the candle API wants it; naive datetimes refused."""
    return require_aware(moment).astimezone(IST).strftime("%Y-%m-%d %H:%M")


class SmartApiClient:
    """A thread-safe SmartAPI REST client. Set the session's JWT with ``set_jwt``."""

    def __init__(
        self,
        root_url: str,
        api_key: str,
        *,
        timeout: float = 7.0,
        connect_timeout: float = 3.0,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
        limiter_timeout: float = 10.0,
        client_local_ip: str,
        client_public_ip: str,
        mac: str,
        read_retries: int = 2,
        pool_size: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root_url = root_url.rstrip("/")
        self.api_key = api_key
        self.client_local_ip = client_local_ip
        self.client_public_ip = client_public_ip
        self.mac = mac
        self.timeout = (connect_timeout, timeout)
        self.limiter = limiter
        self.limiter_timeout = limiter_timeout
        self.read_retries = read_retries
        self._sleep = sleep
        self._jwt: str | None = None
        self._lock = threading.Lock()
        if session is None:
            session = requests.Session()
            # No urllib3 retries: whether a call may be repeated is decided here.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._http = session
        self._base_headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-UserType": "USER",
            "X-SourceID": "WEB",
            "X-ClientLocalIP": client_local_ip,
            "X-ClientPublicIP": client_public_ip,
            "X-MACAddress": mac,
            "X-PrivateKey": api_key,
        }

    def __repr__(self) -> str:
        return f"SmartApiClient({self.root_url!r}, api_key={mask(self.api_key)})"

    # --- session token ---------------------------------------------------------------

    def set_jwt(self, jwt: str | None) -> None:
        with self._lock:
            self._jwt = jwt

    @property
    def jwt(self) -> str | None:
        with self._lock:
            return self._jwt

    def close(self) -> None:
        self._http.close()

    # --- transport -------------------------------------------------------------------

    def _headers(self, route: str, secure: bool, jwt: str | None) -> dict[str, str]:
        headers = dict(self._base_headers)
        if secure:
            jwt = jwt or self.jwt
            if not jwt:
                raise SessionExpiredError(
                    "no session: log in before calling", route=route, code="AG8003"
                )
            headers["Authorization"] = f"Bearer {jwt}"
        return headers

    def _send(
        self,
        route: str,
        body: Mapping[str, Any] | None,
        *,
        suffix: str = "",
        priority: str = "normal",
        jwt: str | None = None,
    ) -> Any:
        """One HTTP exchange, limiter first; returns ``data`` or raises a BrokerError."""
        method, path, secure = ROUTES[route]
        self._headers(route, secure, jwt)  # no session: refuse before taking a slot
        if self.limiter is not None:
            waited = self.limiter.acquire(
                endpoint_for(route), priority, timeout=self.limiter_timeout
            )
            if waited > 0.5:  # normal pacing, not a fault: keep it out of INFO
                log.debug("%s waited %.2fs for the rate limiter", route, waited)
        headers = self._headers(route, secure, jwt)  # after the wait: the newest JWT
        data = json.dumps(body, separators=(",", ":")) if method == "POST" else None
        started = time.monotonic()
        try:
            response = self._http.request(
                method,
                self.root_url + path + suffix,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = from_request_exception(route, exc)
            log.debug("%s failed after %.2fs: %s", route, time.monotonic() - started, error)
            raise error from exc
        log.debug(
            "%s HTTP %s in %.3fs", route, response.status_code, response.elapsed.total_seconds()
        )
        try:
            return parse(
                route,
                response.status_code,
                response.content,
                content_type=response.headers.get("Content-Type", ""),
            )
        except RateLimitedError as error:
            if self.limiter is not None:
                # Angel counted more than our limiter did: every process waits, not just us.
                self.limiter.hold(endpoint_for(route), error.retry_after)
            raise

    def _call(self, route: str, body: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """``_send`` with retries for idempotent reads: transient faults back off, rate
        limits wait as told. Everything else propagates at once."""
        attempts = 1 + (self.read_retries if route in _RETRYABLE_READS else 0)
        for attempt in range(1, attempts + 1):
            try:
                return self._send(route, body, **kw)
            except (TransientError, RateLimitedError) as error:
                if attempt == attempts or isinstance(error, RateLimitTimeout):
                    if attempt > 1:
                        log.warning("%s: giving up after %d attempts: %s", route, attempt, error)
                    raise
                if isinstance(error, RateLimitedError):
                    wait = error.retry_after
                else:
                    wait = min(0.5 * 2 ** (attempt - 1), 4.0) * random.uniform(0.5, 1.0)
                log.warning(
                    "%s: %s; retry %d of %d in %.2fs",
                    route,
                    error,
                    attempt,
                    attempts - 1,
                    wait,
                )
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _call_list(self, route: str, body: Mapping[str, Any] | None = None) -> list:
        """A list route: ``null`` data and the "nothing found" codes mean an empty list."""
        try:
            data = self._call(route, body)
        except RejectedError as error:
            if error.code in EMPTY_RESULT_CODES:
                return []
            raise
        if data is None:
            return []
        if not isinstance(data, list):
            raise ProtocolError(f"expected a list, got {type(data).__name__}", route=route)
        return data

    # --- session ---------------------------------------------------------------------

    def login(self, client_code: str, pin: str, totp: str) -> dict[str, str]:
        """``loginByPassword``: data with ``jwtToken``, ``refreshToken``, ``feedToken``."""
        body = {"clientcode": client_code, "password": pin, "totp": totp}
        return self._tokens("loginByPassword", self._send("loginByPassword", body))

    def generate_tokens(self, refresh_token: str, jwt: str) -> dict[str, str]:
        """``generateTokens``: three fresh tokens from the refresh token and current JWT."""
        data = self._send("generateTokens", {"refreshToken": refresh_token}, jwt=jwt)
        return self._tokens("generateTokens", data)

    @staticmethod
    def _tokens(route: str, data: Any) -> dict[str, str]:
        if not isinstance(data, dict) or not data.get("jwtToken") or not data.get("refreshToken"):
            raise ProtocolError("answer carries no jwtToken/refreshToken", route=route)
        return data

    def logout(self, client_code: str) -> Any:
        return self._send("logout", {"clientcode": client_code})

    def get_profile(self) -> dict:
        return self._call("getProfile")

    def get_rms(self) -> dict:
        return self._call("getRMS")

    # --- orders ----------------------------------------------------------------------

    def place_order(self, params: Mapping[str, Any], *, priority: str = "normal") -> dict:
        """Send one order. ``priority="exit"`` lets exits use the reserved order budget.

        Returns ``{script, orderid, uniqueorderid}``. Acceptance by Angel's OMS only: the
        final state comes from the order book or the order-update stream.
        """
        tag = params.get("ordertag")
        if tag is not None and len(str(tag)) > ORDERTAG_MAX:
            raise RejectedError(
                f"ordertag {tag!r} is {len(str(tag))} characters; at most {ORDERTAG_MAX}"
                " (Angel refuses 20 or more with AB4008)",
                route="placeOrder",
                code="AB4008",
            )
        return self._send("placeOrder", _strings(params), priority=priority)

    def modify_order(self, params: Mapping[str, Any], *, priority: str = "normal") -> dict:
        return self._send("modifyOrder", _strings(params), priority=priority)

    def cancel_order(self, variety: str, orderid: str, *, priority: str = "cancel") -> dict:
        body = {"variety": variety, "orderid": orderid}
        return self._send("cancelOrder", body, priority=priority)

    def get_order_book(self) -> list[dict]:
        return self._call_list("getOrderBook")

    def get_trade_book(self) -> list[dict]:
        return self._call_list("getTradeBook")

    def order_details(self, uniqueorderid: str) -> dict:
        if not uniqueorderid or "/" in uniqueorderid:
            raise ValueError(f"bad uniqueorderid {uniqueorderid!r}")
        return self._call("orderDetails", suffix=uniqueorderid)

    # --- market data -----------------------------------------------------------------

    def get_ltp(self, exchange: str, tradingsymbol: str, symboltoken: str) -> dict:
        body = {"exchange": exchange, "tradingsymbol": tradingsymbol, "symboltoken": symboltoken}
        return self._call("getLtpData", body)

    def market_quote(self, mode: str, exchange_tokens: Mapping[str, list[str]]) -> dict:
        """``quote`` for any number of tokens, sent as requests of at most 50 tokens.

        Returns ``{"fetched": [...], "unfetched": [...]}`` merged over the requests.
        """
        if mode not in QUOTE_MODES:
            raise ValueError(f"quote mode must be one of {QUOTE_MODES}, got {mode!r}")
        pairs = [(ex, str(tok)) for ex, tokens in exchange_tokens.items() for tok in tokens]
        fetched: list = []
        unfetched: list = []
        for start in range(0, len(pairs), QUOTE_TOKENS_PER_REQUEST):
            chunk: dict[str, list[str]] = {}
            for exchange, token in pairs[start : start + QUOTE_TOKENS_PER_REQUEST]:
                chunk.setdefault(exchange, []).append(token)
            data = self._call("quote", {"mode": mode, "exchangeTokens": chunk}) or {}
            if not isinstance(data, dict):
                raise ProtocolError(
                    f"expected fetched/unfetched, got a {type(data).__name__}", route="quote"
                )
            fetched.extend(data.get("fetched") or [])
            unfetched.extend(data.get("unfetched") or [])
        return {"fetched": fetched, "unfetched": unfetched}

    def get_candle_data(
        self,
        exchange: str,
        token: str,
        interval: str,
        from_dt: datetime,
        to_dt: datetime,
    ) -> list[list]:
        """Candle rows ``[iso time, open, high, low, close, volume]`` (rupees), oldest first.

        ``from_dt`` / ``to_dt`` must be timezone-aware; they are sent in IST.
        """
        if interval not in CANDLE_INTERVAL_DAYS:
            raise ValueError(f"unknown candle interval {interval!r}")
        start, end = candle_time(from_dt), candle_time(to_dt)
        if to_dt < from_dt:
            raise ValueError(f"candle range ends before it starts: {start} > {end}")
        days = (to_dt - from_dt).total_seconds() / 86400
        if days > CANDLE_INTERVAL_DAYS[interval]:
            raise ValueError(
                f"{interval} allows {CANDLE_INTERVAL_DAYS[interval]} days per request, "
                f"asked for {days:.1f}"
            )
        body = {
            "exchange": exchange,
            "symboltoken": str(token),
            "interval": interval,
            "fromdate": start,
            "todate": end,
        }
        return self._call_list("getCandleData", body)

    def get_position(self) -> list[dict]:
        return self._call_list("getPosition")

    def get_holding(self) -> list[dict]:
        return self._call_list("getHolding")

    def search_scrip(self, exchange: str, query: str) -> list[dict]:
        return self._call_list("searchScrip", {"exchange": exchange, "searchscrip": query})
