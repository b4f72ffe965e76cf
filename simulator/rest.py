"""REST routes at the bare root, with Angel's three response shapes (smartapi.md §1.3).

Every route runs the same gate, in the order a gateway would: armed REST faults, the
sliding-window rate limit (HTTP 403 text), the X-PrivateKey check (shape B AG8004) and,
on secure routes, the bearer JWT (shape B AG8003 missing / AG8001 bad or expired).
Shape-B answers use ``SimConfig.auth_error_status`` (HTTP 200 by default).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.auth import Session, bearer
from simulator.candles import CandleRequestError, parse_ist
from simulator.faults import LostOrderRule
from simulator.market import InstrumentState
from simulator.orders import OrderRequestError, broker_time
from simulator.ratelimit import RATE_LIMIT_TEXT

if TYPE_CHECKING:
    from simulator.server import Simulator

logger = logging.getLogger(__name__)

AUTH = "/rest/auth/angelbroking"
SECURE = "/rest/secure/angelbroking"
SCRIP_MASTER_PATH = "/OpenAPI_File/files/OpenAPIScripMaster.json"
QUOTE_TOKEN_CAP = 50
ORDER_ROUTES = ("placeOrder", "modifyOrder", "cancelOrder")
PUBLIC_ROUTES = ("login", "scripMaster")

# SDK-style route name: (HTTP method, path at the bare root). orderDetails takes the
# uniqueorderid as the last path segment.
ROUTE_PATHS: dict[str, tuple[str, str]] = {
    "login": ("POST", f"{AUTH}/user/v1/loginByPassword"),
    "generateTokens": ("POST", f"{AUTH}/jwt/v1/generateTokens"),
    "logout": ("POST", f"{SECURE}/user/v1/logout"),
    "getProfile": ("GET", f"{SECURE}/user/v1/getProfile"),
    "getRMS": ("GET", f"{SECURE}/user/v1/getRMS"),
    "placeOrder": ("POST", f"{SECURE}/order/v1/placeOrder"),
    "modifyOrder": ("POST", f"{SECURE}/order/v1/modifyOrder"),
    "cancelOrder": ("POST", f"{SECURE}/order/v1/cancelOrder"),
    "getOrderBook": ("GET", f"{SECURE}/order/v1/getOrderBook"),
    "getTradeBook": ("GET", f"{SECURE}/order/v1/getTradeBook"),
    "orderDetails": ("GET", f"{SECURE}/order/v1/details/{{uniqueorderid}}"),
    "getLtpData": ("POST", f"{SECURE}/order/v1/getLtpData"),
    "getMarketData": ("POST", f"{SECURE}/market/v1/quote"),
    "getCandleData": ("POST", f"{SECURE}/historical/v1/getCandleData"),
    "searchScrip": ("POST", f"{SECURE}/order/v1/searchScrip"),
    "getPosition": ("GET", f"{SECURE}/order/v1/getPosition"),
    "getHolding": ("GET", f"{SECURE}/portfolio/v1/getHolding"),
    "getAllHolding": ("GET", f"{SECURE}/portfolio/v1/getAllHolding"),
    "scripMaster": ("GET", SCRIP_MASTER_PATH),
}


def ok(data: Any, message: str = "SUCCESS") -> dict[str, Any]:
    return {"status": True, "message": message, "errorcode": "", "data": data}


def fail(code: str, message: str) -> dict[str, Any]:
    """Envelope A error: a business failure, HTTP 200."""
    return {"status": False, "message": message, "errorcode": code, "data": None}


def gateway_fail(code: str, message: str) -> dict[str, Any]:
    """Envelope B: the gateway's token / key failures."""
    return {"success": False, "message": message, "errorCode": code, "data": ""}


def _json(body: dict[str, Any] | list, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def _body(response: web.Response) -> bytes:
    """The body of a response made here: always bytes (built with ``body=`` or ``text=``)."""
    body = response.body
    assert isinstance(body, bytes | bytearray)
    return bytes(body)


Impl = Callable[[web.Request, Session | None, dict], Awaitable[Any]]


class Rest:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        impls: dict[str, Impl] = {
            "login": self.login, "generateTokens": self.refresh, "logout": self.logout,
            "getProfile": self.profile, "getRMS": self.rms, "placeOrder": self.place,
            "modifyOrder": self.modify, "cancelOrder": self.cancel,
            "getOrderBook": self.order_book, "getTradeBook": self.trade_book,
            "orderDetails": self.details, "getLtpData": self.ltp,
            "getMarketData": self.quote, "getCandleData": self.candles,
            "searchScrip": self.search, "getPosition": self.positions,
            "getHolding": self.holding, "getAllHolding": self.all_holding,
            "scripMaster": self.scrip_master,
        }
        self.table = [
            (method, path, name, impls[name], name not in PUBLIC_ROUTES)
            for name, (method, path) in ROUTE_PATHS.items()
        ]

    def add_routes(self, app: web.Application) -> None:
        for method, path, name, impl, secure in self.table:
            app.router.add_route(method, path, self._gate(name, impl, secure))

    # --- the gate ---------------------------------------------------------------------

    def _gate(self, name: str, impl: Impl, secure: bool):
        async def handler(request: web.Request) -> web.StreamResponse:
            sim = self.sim
            sim.count_call(name)
            rule = sim.faults.take_rest_rule(name)
            if rule is not None:
                sim.faults.record("affected", "rest_error", route=name, kind=rule.kind,
                                  path=request.path)
                if rule.kind == "delay":
                    await asyncio.sleep(rule.delay_seconds)
                elif rule.kind not in ("truncated", "empty"):
                    return _fault_response(rule.kind, rule.status)
            response = await self._run(request, name, impl, secure)
            if rule is not None and rule.kind == "truncated" and response.body:
                body = _body(response)
                return web.Response(status=response.status, body=body[: len(body) // 2],
                                    content_type="application/json")
            if rule is not None and rule.kind == "empty":
                return web.Response(status=200, body=b"", content_type="application/json")
            if name in ORDER_ROUTES:
                lost = sim.faults.take_lost_order(name)
                if lost is not None:
                    return await self._lose(request, name, lost, response)
            return response

        return handler

    async def _run(self, request: web.Request, name: str, impl: Impl,
                   secure: bool) -> web.Response:
        sim = self.sim
        if name != "scripMaster" and not sim.limiter.allow(name):
            sim.count_rate_limited(name)
            return web.Response(status=403, text=RATE_LIMIT_TEXT, content_type="text/plain")
        session: Session | None = None
        if name != "scripMaster":
            status = sim.config.auth_error_status
            if not sim.sessions.check_api_key(request.headers.get("X-PrivateKey")):
                return _json(gateway_fail("AG8004", "Invalid API Key"), status)
            user_type = request.headers.get("X-UserType")
            if user_type is not None and user_type != "USER":
                return _json(fail("AB1005", "User Type Must Be USER"))
            if secure:
                jwt = bearer(request.headers.get("Authorization"))
                if jwt is None:
                    return _json(gateway_fail("AG8003", "Invalid Token"), status)
                session = sim.sessions.from_jwt(jwt)
                if session is None:
                    if jwt in sim.sessions.killed:
                        sim.faults.record("affected", "expire_sessions", route=name)
                    return _json(gateway_fail("AG8001", "Invalid Token"), status)
        body: dict = {}
        if request.method == "POST":
            raw = await request.read()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None  # type: ignore[assignment]
            if not isinstance(body, dict):
                return _json(fail("AB1004", "Something Went Wrong, Please Try After Sometime"))
        result = await impl(request, session, body)
        if isinstance(result, web.Response):
            return result
        return _json(result)

    async def _lose(self, request: web.Request, name: str, rule: LostOrderRule,
                    response: web.Response) -> web.Response:
        """The order was booked; the client never hears so."""
        try:
            data = json.loads(_body(response)).get("data") or {}
        except (ValueError, AttributeError):
            data = {}
        self.sim.faults.record(
            "affected", "lose_order_response", route=name, mode=rule.mode,
            orderid=data.get("orderid"), uniqueorderid=data.get("uniqueorderid"),
        )
        if rule.mode == "hang":
            await asyncio.sleep(rule.hang_seconds)
        if request.transport is not None:
            request.transport.abort()
        return response

    # --- auth -------------------------------------------------------------------------

    async def login(self, request: web.Request, _: Session | None, body: dict) -> dict:
        sessions = self.sim.sessions
        client = str(body.get("clientcode", ""))
        if not client or "password" not in body or "totp" not in body:
            return fail("AB1004", "Something Went Wrong, Please Try After Sometime")
        if not sessions.check_pin(client, str(body["password"])):
            return fail("AB1000", "Invalid clientcode or password")
        if not sessions.check_totp(str(body["totp"])):
            return fail("AB1050", "Invalid totp")
        session = sessions.login(client)
        logger.info("login for %s", client)
        return ok(_tokens(session))

    async def refresh(self, request: web.Request, session: Session | None, body: dict) -> dict:
        assert session is not None
        if body.get("refreshToken") != session.refresh_token:
            return fail("AB8050", "Invalid refresh Token")
        return ok(_tokens(self.sim.sessions.rotate(session)))

    async def logout(self, request: web.Request, session: Session | None, body: dict) -> dict:
        assert session is not None
        if str(body.get("clientcode", session.client_code)) != session.client_code:
            return fail("AB2000", "Invalid clientcode")
        self.sim.sessions.revoke(session)
        return ok("", "LOGOUT SUCCESS")

    async def profile(self, request: web.Request, session: Session | None, body: dict) -> dict:
        assert session is not None
        return ok({
            "clientcode": session.client_code,
            "name": "PAPER TRADER",
            "email": "",
            "mobileno": "",
            "exchanges": ["nse_cm", "bse_cm", "nse_fo", "mcx_fo", "cde_fo"],
            "products": ["MARGIN", "MIS", "NRML", "CNC", "CO", "BO"],
            "lastlogintime": "",
            "brokerid": "B2C",
        })

    async def rms(self, request: web.Request, session: Session | None, body: dict) -> dict:
        book = self.sim.orders
        cash = book.available_cash
        used = max(0.0, book.cash_used)
        data = {
            "net": cash, "availablecash": cash, "availableintradaypayin": 0.0,
            "availablelimitmargin": 0.0, "collateral": 0.0, "m2munrealized": 0.0,
            "m2mrealized": 0.0, "utiliseddebits": used, "utilisedspan": 0.0,
            "utilisedoptionpremium": 0.0, "utilisedholdingsales": 0.0,
            "utilisedexposure": 0.0, "utilisedturnover": 0.0, "utilisedpayout": 0.0,
        }
        return ok({key: f"{value:.4f}" for key, value in data.items()})

    # --- orders -----------------------------------------------------------------------

    async def place(self, request: web.Request, session: Session | None, body: dict) -> dict:
        try:
            order = self.sim.orders.place(body)
        except OrderRequestError as exc:
            return fail(exc.code, exc.message)
        reason = self.sim.faults.take_reject()
        if reason is not None:
            self.sim.faults.record("affected", "reject_orders", orderid=order["orderid"])
            self.sim.orders.reject_now(order, reason)
        return ok({"script": order["tradingsymbol"], "orderid": order["orderid"],
                   "uniqueorderid": order["uniqueorderid"]})

    async def modify(self, request: web.Request, session: Session | None, body: dict) -> dict:
        try:
            order = self.sim.orders.modify(body)
        except OrderRequestError as exc:
            return fail(exc.code, exc.message)
        return ok({"orderid": order["orderid"], "uniqueorderid": order["uniqueorderid"]})

    async def cancel(self, request: web.Request, session: Session | None, body: dict) -> dict:
        try:
            order = self.sim.orders.cancel(body)
        except OrderRequestError as exc:
            return fail(exc.code, exc.message)
        return ok({"orderid": order["orderid"], "uniqueorderid": order["uniqueorderid"]})

    async def order_book(self, request: web.Request, session: Session | None,
                         body: dict) -> dict:
        return ok(self.sim.orders.book() or None)

    async def trade_book(self, request: web.Request, session: Session | None,
                         body: dict) -> dict:
        return ok([dict(t) for t in self.sim.orders.trades] or None)

    async def details(self, request: web.Request, session: Session | None, body: dict) -> dict:
        order = self.sim.orders.by_unique.get(request.match_info["uniqueorderid"])
        if order is None:
            return fail("AB1007", "Order not found")
        return ok(order.book_row())

    async def positions(self, request: web.Request, session: Session | None,
                        body: dict) -> dict:
        return ok(self.sim.orders.positions() or None)

    async def holding(self, request: web.Request, session: Session | None, body: dict) -> dict:
        return ok(None)  # a paper account holds nothing overnight

    async def all_holding(self, request: web.Request, session: Session | None,
                          body: dict) -> dict:
        return ok({"holdings": [], "totalholding": {
            "totalholdingvalue": 0, "totalinvvalue": 0, "totalprofitandloss": 0,
            "totalpnlpercentage": 0,
        }})

    # --- market data ------------------------------------------------------------------

    async def ltp(self, request: web.Request, session: Session | None, body: dict) -> dict:
        state = self.sim.market.get(str(body.get("symboltoken", "")))
        exchange = str(body.get("exchange", "")).upper()
        if state is None or exchange != state.exchange:
            return fail("AB1009", "Symbol not found")
        return ok({
            "exchange": state.exchange, "tradingsymbol": state.symbol,
            "symboltoken": state.token, "open": state.open_paise / 100,
            "high": state.high_paise / 100, "low": state.low_paise / 100,
            "close": state.close_paise / 100, "ltp": state.ltp,
        })

    async def quote(self, request: web.Request, session: Session | None, body: dict) -> dict:
        mode = str(body.get("mode", "")).upper()
        wanted = body.get("exchangeTokens")
        if mode not in ("LTP", "OHLC", "FULL") or not isinstance(wanted, dict):
            return fail("AB2000", "Invalid mode or exchangeTokens")
        pairs = [(str(ex).upper(), str(t)) for ex, tokens in wanted.items()
                 for t in (tokens if isinstance(tokens, list) else [])]
        if len(pairs) > QUOTE_TOKEN_CAP:
            return fail("AB2000", f"A quote request takes at most {QUOTE_TOKEN_CAP} tokens")
        fetched, unfetched = [], []
        for exchange, token in pairs:
            state = self.sim.market.get(token)
            if state is None or state.exchange != exchange:
                unfetched.append({"exchange": exchange, "symbolToken": token,
                                  "message": "Symbol not found", "errorCode": "AB1009"})
            else:
                fetched.append(_quote_row(state, mode))
        return ok({"fetched": fetched, "unfetched": unfetched})

    async def candles(self, request: web.Request, session: Session | None, body: dict) -> dict:
        token = str(body.get("symboltoken", ""))
        exchange = str(body.get("exchange", "")).upper()
        state = self.sim.market.get(token)
        if state is None or exchange != state.exchange:
            return fail("AB1009", "Symbol not found")
        try:
            start = parse_ist(body.get("fromdate", ""))
            end = parse_ist(body.get("todate", ""))
            rows = self.sim.candles.candles(
                token, str(body.get("interval", "")), start, end, self.sim.clock()
            )
        except CandleRequestError as exc:
            return fail("AB2000", str(exc))
        return ok(rows)

    async def search(self, request: web.Request, session: Session | None, body: dict) -> dict:
        exchange = str(body.get("exchange", "")).upper()
        text = str(body.get("searchscrip", "")).strip().upper()
        found = [
            {"exchange": s.exchange, "tradingsymbol": s.symbol, "symboltoken": s.token}
            for s in self.sim.market.instruments.values()
            if text and s.exchange == exchange and text in s.symbol.upper()
        ]
        if not found:
            return ok([], "No matching trading symbols found for the given query.")
        return ok(found, f"Search successful. Found {len(found)} trading symbols for the "
                         "given query.")

    async def scrip_master(self, request: web.Request, session: Session | None,
                           body: dict) -> web.Response:
        return _json(self.sim.scrip_master())


def _tokens(session: Session) -> dict[str, str]:
    return {"jwtToken": session.jwt, "refreshToken": session.refresh_token,
            "feedToken": session.feed_token}


def _quote_row(state: InstrumentState, mode: str) -> dict[str, Any]:
    row: dict[str, Any] = {"exchange": state.exchange, "tradingSymbol": state.symbol,
                           "symbolToken": state.token, "ltp": state.ltp}
    if mode in ("OHLC", "FULL"):
        row.update(open=state.open_paise / 100, high=state.high_paise / 100,
                   low=state.low_paise / 100, close=state.close_paise / 100)
    if mode == "FULL":
        bids, asks = state.book(5)
        stamp = broker_time(state.exchange_ts_ms / 1000)
        change = state.ltp - state.close_paise / 100
        row.update(
            lastTradeQty=state.last_qty, exchFeedTime=stamp, exchTradeTime=stamp,
            netChange=round(change, 2),
            percentChange=round(change / (state.close_paise / 100) * 100, 2),
            avgPrice=state.avg_paise / 100, tradeVolume=state.volume, opnInterest=0,
            lowerCircuit=state.lower_circuit / 100, upperCircuit=state.upper_circuit / 100,
            totBuyQuan=int(state.total_buy), totSellQuan=int(state.total_sell),
            **{"52WeekLow": state.low_52w / 100, "52WeekHigh": state.high_52w / 100},
            depth={
                "buy": [{"price": b.price, "quantity": b.quantity, "orders": b.orders}
                        for b in bids],
                "sell": [{"price": a.price, "quantity": a.quantity, "orders": a.orders}
                         for a in asks],
            },
        )
    return row


def _fault_response(kind: str, status: int) -> web.Response:
    if kind == "5xx":
        return web.Response(status=status or 503, content_type="text/html",
                            text="<html><body><h1>503 Service Temporarily Unavailable"
                                 "</h1></body></html>")
    if kind == "AB1004":
        return _json(fail("AB1004", "Something Went Wrong, Please Try After Sometime"))
    if kind == "rate_limit":
        return web.Response(status=403, text=RATE_LIMIT_TEXT, content_type="text/plain")
    return web.Response(  # html: the CDN's "Access Denied" page instead of JSON
        status=status or 403, content_type="text/html",
        text="<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY><H1>Access Denied</H1>"
             "You don't have permission to access this server.</BODY></HTML>",
    )
