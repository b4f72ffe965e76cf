"""The two WebSocket endpoints: /smart-stream (market data) and /smart-order-update.

Market frames are built once per update and mode, framed once (server frames are not
masked, so one framed packet serves every subscriber), queued per connection during an
engine step and written with one ``transport.write`` per connection per step. Order
updates are written the same way, so they stay in order without extra tasks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from broker import codec
from simulator.auth import bearer
from simulator.market import InstrumentState

if TYPE_CHECKING:
    from simulator.server import Simulator

logger = logging.getLogger(__name__)

Key = tuple[int, str]
TextHandler = Callable[["Connection", str], Awaitable[None]]
MAX_TOKENS = 1000
MAX_DEPTH_TOKENS = 50
CLOSE_POLICY = 1008
LIMIT_REASON = b"Connection limit exceeded"


def ws_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One unmasked, final server-to-client frame."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = bytes((first, size))
    elif size < 65536:
        header = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + size.to_bytes(8, "big")
    return header + payload


_HEADERS = {size: ws_frame(b"\0" * size)[: -size] for size in codec.FRAME_SIZES.values()}


class Connection:
    __slots__ = (
        "kind", "ws", "transport", "client_code", "subs", "pending", "frames", "opened",
    )

    def __init__(self, kind: str, ws: web.WebSocketResponse, request: web.Request,
                 client_code: str) -> None:
        self.kind = kind
        self.ws = ws
        self.transport = request.transport
        self.client_code = client_code
        self.subs: dict[int, set[Key]] = {mode: set() for mode in codec.MODES}
        self.pending: list[bytes] = []
        self.frames = 0
        self.opened = time.time()

    @property
    def token_count(self) -> int:
        return sum(len(keys) for keys in self.subs.values())

    def write_now(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def error_text(correlation_id: str, code: str, message: str) -> str:
    return json.dumps({"correlationID": correlation_id, "errorCode": code,
                       "errorMessage": message})


class RequestError(ValueError):
    """A subscription request the server refuses; the client gets an E100x text frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_subscription(text: str) -> tuple[str, int, int, list[Key]]:
    """(correlation id, action, mode, keys) from a subscribe/unsubscribe frame."""
    try:
        body = json.loads(text)
    except ValueError:
        raise RequestError("E1001", "Invalid Request Payload.") from None
    if not isinstance(body, dict):
        raise RequestError("E1001", "Invalid Request Payload.")
    correlation = str(body.get("correlationID", ""))[:10]
    try:
        action = body["action"]
        params = body["params"]
        mode = params["mode"]
        token_list = params["tokenList"]
        if action not in (0, 1) or mode not in codec.MODES or not isinstance(token_list, list):
            raise TypeError
        keys: list[Key] = []
        for group in token_list:
            exchange_type = group["exchangeType"]
            tokens = group["tokens"]
            if not isinstance(exchange_type, int) or not isinstance(tokens, list):
                raise TypeError
            for token in tokens:
                if not isinstance(token, (str, int)) or not str(token).strip():
                    raise TypeError
                keys.append((exchange_type, str(token).strip()))
    except (KeyError, TypeError):
        raise RequestError("E1001", "Invalid Request Payload.") from None
    if mode == codec.MODE_DEPTH_20 and any(ex != 1 for ex, _ in keys):
        raise RequestError("E1001", "Invalid Request Payload. Depth 20 is only for exchangeType 1")
    return correlation, action, mode, keys


class Streams:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.market: set[Connection] = set()
        self.orders: set[Connection] = set()
        self.hub: dict[Key, dict[int, set[Connection]]] = {}
        self._dirty: set[Connection] = set()
        self.frames_sent = 0
        self.frames_dropped = 0
        self.bytes_sent = 0
        self.rejected_connections = 0
        sim.orders.listeners.append(self.order_event)

    # --- handshake --------------------------------------------------------------------

    def _refused(self, request: web.Request) -> web.Response | None:
        faults = self.sim.faults
        if not faults.refusing:
            return None
        faults.record("affected", "refuse_handshake", path=request.path,
                      status=faults.refuse_status)
        return web.Response(status=faults.refuse_status, text="Handshake refused",
                            headers={"x-error-message": "Service unavailable, try again later"})

    def _market_auth(self, request: web.Request) -> tuple[str | None, str]:
        """(client code, "") when the handshake is good, else (None, the reason)."""
        headers, query = request.headers, request.query
        sessions = self.sim.sessions
        client = headers.get("x-client-code") or query.get("clientCode")
        feed = headers.get("x-feed-token") or query.get("feedToken")
        api_key = headers.get("x-api-key") or query.get("apiKey")
        jwt = bearer(headers.get("Authorization"))
        if jwt is not None and sessions.from_jwt(jwt) is None:
            if jwt in sessions.killed:
                self.sim.faults.record("affected", "expire_sessions", path=request.path)
            return None, "Invalid Auth token"
        if not client:
            return None, "Invalid Client Code"
        if api_key is not None and not sessions.check_api_key(api_key):
            return None, "Invalid API Key"
        session = sessions.from_feed(feed)
        if session is None:
            if feed in sessions.killed:
                self.sim.faults.record("affected", "expire_sessions", path=request.path)
            return None, "Invalid Feed Token"
        if session.client_code != client:
            return None, "Invalid Client Code"
        return client, ""

    async def _open(self, request: web.Request, kind: str, client: str,
                    pool: set[Connection]) -> tuple[web.WebSocketResponse, Connection | None]:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        same = [c for c in pool if c.client_code == client]
        if len(same) >= self.sim.config.max_ws_connections:
            # The newest connection is the one closed; the open ones keep streaming.
            self.rejected_connections += 1
            logger.warning("%s connection %d for %s closed: limit is %d", kind,
                           len(same) + 1, client, self.sim.config.max_ws_connections)
            await ws.close(code=CLOSE_POLICY, message=LIMIT_REASON)
            return ws, None
        conn = Connection(kind, ws, request, client)
        pool.add(conn)
        return ws, conn

    # --- /smart-stream ----------------------------------------------------------------

    async def market_handler(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        client, reason = self._market_auth(request)
        if client is None:
            return web.Response(status=401, text=reason, headers={"x-error-message": reason})
        ws, conn = await self._open(request, "market", client, self.market)
        if conn is None:
            return ws
        try:
            await self._serve(conn, self._market_text)
        finally:
            self._forget(conn)
        return ws

    async def _serve(self, conn: Connection, on_text: TextHandler) -> None:
        ws = conn.ws
        faults = self.sim.faults
        while not ws.closed:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                if msg.data == "ping":
                    if conn.kind == "market" and faults.blackholed:
                        faults.record("affected", "blackhole", unanswered="text ping")
                    else:
                        await ws.send_str("pong")
                else:
                    await on_text(conn, msg.data)
            elif msg.type == WSMsgType.PING:
                if conn.kind == "market" and faults.blackholed:
                    faults.record("affected", "blackhole", unanswered="protocol ping")
                else:
                    await ws.pong(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                              WSMsgType.ERROR):
                break

    async def _market_text(self, conn: Connection, text: str) -> None:
        try:
            correlation, action, mode, keys = parse_subscription(text)
        except RequestError as exc:
            correlation = _correlation(text)
            await conn.ws.send_str(error_text(correlation, exc.code, str(exc)))
            return
        if action == codec.ACTION_UNSUBSCRIBE:
            for key in keys:
                self._unsubscribe(conn, mode, key)
            return
        fresh = [k for k in dict.fromkeys(keys) if k not in conn.subs[mode]]
        if conn.token_count + len(fresh) > MAX_TOKENS:
            await conn.ws.send_str(error_text(
                correlation, "E1002", "Invalid Request. Subscription Limit Exceeded."))
            return
        if mode == codec.MODE_DEPTH_20 and len(conn.subs[mode]) + len(fresh) > MAX_DEPTH_TOKENS:
            await conn.ws.send_str(error_text(
                correlation, "E1002", "Invalid Request. Depth 20 is limited to 50 tokens."))
            return
        market = self.sim.market
        for key in fresh:
            conn.subs[mode].add(key)
            self.hub.setdefault(key, {}).setdefault(mode, set()).add(conn)
            state = market.by_key.get(key)
            # The first tick is the only confirmation a subscriber gets (smartapi.md §3.3).
            if state is not None and state.sequence and not self.sim.faults.stalled:
                self._queue(conn, _HEADERS[codec.FRAME_SIZES[mode]] + state.encode(mode))
        self.flush()

    def _unsubscribe(self, conn: Connection, mode: int, key: Key) -> None:
        conn.subs[mode].discard(key)
        modes = self.hub.get(key)
        if modes and mode in modes:
            modes[mode].discard(conn)

    def _forget(self, conn: Connection) -> None:
        self.market.discard(conn)
        self.orders.discard(conn)
        self._dirty.discard(conn)
        for mode, keys in conn.subs.items():
            for key in keys:
                self.hub.get(key, {}).get(mode, set()).discard(conn)

    # --- market fan-out ---------------------------------------------------------------

    def _queue(self, conn: Connection, frame: bytes) -> None:
        conn.pending.append(frame)
        self._dirty.add(conn)

    def publish(self, state: InstrumentState) -> None:
        """Queue this update for every subscriber, encoded once per mode."""
        modes = self.hub.get(state.key)
        if not modes:
            return
        for mode, conns in modes.items():
            if conns:
                frame = _HEADERS[codec.FRAME_SIZES[mode]] + state.encode(mode)
                for conn in conns:
                    conn.pending.append(frame)
                    self._dirty.add(conn)

    def flush(self) -> None:
        faults = self.sim.faults
        if faults.stalled:
            for conn in self._dirty:
                faults.withheld += len(conn.pending)
                conn.pending.clear()
            self._dirty.clear()
            return
        if faults.withheld:
            faults.record("affected", "blackhole" if faults.blackhole_until > faults.stall_until
                          else "stall", frames_withheld=faults.withheld)
            faults.withheld = 0
        for kind, count in faults.take_bad_frames():
            for conn in self.market:
                for _ in range(count):
                    self._queue(conn, ws_frame(_bad_frame(kind, conn)))
            faults.record("affected", "bad_frames", kind=kind, count=count,
                          connections=len(self.market))
        limit = self.sim.config.max_ws_buffer
        for conn in self._dirty:
            frames = conn.pending
            transport = conn.transport
            if transport is None or transport.is_closing():
                pass
            elif transport.get_write_buffer_size() > limit:
                self.frames_dropped += len(frames)
            else:
                data = b"".join(frames)
                transport.write(data)
                conn.frames += len(frames)
                self.frames_sent += len(frames)
                self.bytes_sent += len(data)
            conn.pending = []
        self._dirty.clear()

    def drop_market(self) -> int:
        """Abort every market connection without a close frame."""
        conns = list(self.market)
        for conn in conns:
            conn.abort()
        return len(conns)

    def drop_all(self) -> int:
        conns = list(self.market) + list(self.orders)
        for conn in conns:
            conn.abort()
        return len(conns)

    # --- /smart-order-update ----------------------------------------------------------

    async def order_handler(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        session = self.sim.sessions.from_jwt(bearer(request.headers.get("Authorization")))
        if session is None:
            reason = "Invalid Auth token"
            return web.Response(status=401, text=reason, headers={"x-error-message": reason})
        ws, conn = await self._open(request, "order", session.client_code, self.orders)
        if conn is None:
            return ws
        try:
            await ws.send_str(json.dumps(order_message(session.client_code, "AB00", None)))
            await self._serve(conn, _ignore_text)
        finally:
            self._forget(conn)
        return ws

    def order_event(self, code: str, row: dict[str, Any]) -> None:
        for conn in list(self.orders):
            text = json.dumps(order_message(conn.client_code, code, row))
            if conn.write_now(ws_frame(text.encode(), opcode=0x1)):
                conn.frames += 1


async def _ignore_text(conn: Connection, text: str) -> None:
    return None


def _correlation(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    return str(body.get("correlationID", ""))[:10] if isinstance(body, dict) else ""


def _bad_frame(kind: str, conn: Connection) -> bytes:
    keys = [k for keys in conn.subs.values() for k in keys] or [(1, "2885")]
    exchange_type, token = keys[0]
    packet = codec.encode_ltp(exchange_type, token, 0, int(time.time() * 1000), 100)
    if kind == "truncated":
        return packet[:30]
    return bytes((9,)) + packet[1:]  # mode 9 does not exist


_BLANK_ORDER = {
    "variety": "", "ordertype": "", "ordertag": "", "producttype": "", "price": 0.0,
    "triggerprice": 0.0, "quantity": "0", "disclosedquantity": "0", "duration": "",
    "squareoff": 0.0, "stoploss": 0.0, "trailingstoploss": 0.0, "tradingsymbol": "",
    "transactiontype": "", "exchange": "", "symboltoken": "", "instrumenttype": "",
    "strikeprice": -1.0, "optiontype": "", "expirydate": "", "lotsize": "0",
    "cancelsize": "0", "averageprice": 0.0, "filledshares": "0", "unfilledshares": "0",
    "orderid": "", "text": "", "status": "", "orderstatus": "", "updatetime": "",
    "exchtime": "", "exchorderupdatetime": "", "fillid": "", "filltime": "",
    "parentorderid": "", "uniqueorderid": "", "exchangeorderid": "",
}


def order_message(client_code: str, code: str, row: dict[str, Any] | None) -> dict[str, Any]:
    """The order-update envelope (smartapi.md §3.7); AB00 carries a blank order."""
    return {
        "user-id": client_code,
        "status-code": "200",
        "order-status": code,
        "error-message": "",
        "orderData": dict(row) if row is not None else dict(_BLANK_ORDER),
    }
