"""SmartAPI WebSocket V2 ("smart-stream") codec.

Binary market packets are little-endian, one packet per frame, prices in paise and
timestamps in epoch milliseconds (reference: smartapi.md §3.5). Ticks keep prices as
integer paise, which is exact; the ``ltp`` style properties give rupees.

Decoding is the feed's hot path, so each mode has one precompiled ``struct.Struct``,
the 25-byte token field is turned into a string through a small cache, and an LTP frame
whose token is cached is decoded in a handful of bytecodes (bench/bench_codec.py).
"""

from __future__ import annotations

import json
import struct
from functools import partial
from typing import NamedTuple

MODE_LTP = 1
MODE_QUOTE = 2
MODE_SNAP_QUOTE = 3
MODE_DEPTH_20 = 4
MODES = (MODE_LTP, MODE_QUOTE, MODE_SNAP_QUOTE, MODE_DEPTH_20)

ACTION_UNSUBSCRIBE = 0
ACTION_SUBSCRIBE = 1

# Exchange segment (REST "exchange" / scrip master "exch_seg") to WebSocket exchangeType.
EXCHANGE_TYPES = {"NSE": 1, "NFO": 2, "BSE": 3, "BFO": 4, "MCX": 5, "NCDEX": 7, "CDS": 13}
EXCHANGE_NAMES = {code: name for name, code in EXCHANGE_TYPES.items()}

_HEADER = "<BB25sqq"  # mode, exchange type, token, sequence, exchange timestamp
LTP_STRUCT = struct.Struct(_HEADER + "q")
QUOTE_STRUCT = struct.Struct(_HEADER + "q" + "qqqddqqqq")
_BOOK5 = "hqqh" * 10
SNAP_STRUCT = struct.Struct(_HEADER + "q" + "qqqddqqqq" + "qqd" + _BOOK5 + "qqqq")
_BOOK20 = "iih" * 40
DEPTH_STRUCT = struct.Struct("<BB25sqq" + _BOOK20)

LTP_SIZE = LTP_STRUCT.size  # 51
QUOTE_SIZE = QUOTE_STRUCT.size  # 123
SNAP_QUOTE_SIZE = SNAP_STRUCT.size  # 379
DEPTH_20_SIZE = DEPTH_STRUCT.size  # 443
FRAME_SIZES = {
    MODE_LTP: LTP_SIZE,
    MODE_QUOTE: QUOTE_SIZE,
    MODE_SNAP_QUOTE: SNAP_QUOTE_SIZE,
    MODE_DEPTH_20: DEPTH_20_SIZE,
}


class FrameError(ValueError):
    """A frame that is not a valid packet. The feed counts it, logs it and skips it."""


class BookLevel(NamedTuple):
    quantity: int
    price_paise: int
    orders: int

    @property
    def price(self) -> float:
        return self.price_paise / 100


class LtpTick(NamedTuple):
    mode: int
    exchange_type: int
    token: str
    sequence: int
    exchange_ts_ms: int
    ltp_paise: int

    @property
    def ltp(self) -> float:
        return self.ltp_paise / 100

    @property
    def key(self) -> tuple[int, str]:
        return (self.exchange_type, self.token)


class QuoteTick(NamedTuple):
    mode: int
    exchange_type: int
    token: str
    sequence: int
    exchange_ts_ms: int
    ltp_paise: int
    last_traded_qty: int
    avg_price_paise: int
    volume: int
    total_buy_qty: float
    total_sell_qty: float
    open_paise: int
    high_paise: int
    low_paise: int
    close_paise: int

    @property
    def ltp(self) -> float:
        return self.ltp_paise / 100

    @property
    def key(self) -> tuple[int, str]:
        return (self.exchange_type, self.token)


class SnapQuoteTick(NamedTuple):
    mode: int
    exchange_type: int
    token: str
    sequence: int
    exchange_ts_ms: int
    ltp_paise: int
    last_traded_qty: int
    avg_price_paise: int
    volume: int
    total_buy_qty: float
    total_sell_qty: float
    open_paise: int
    high_paise: int
    low_paise: int
    close_paise: int
    last_traded_ts: int
    open_interest: int
    oi_change_pct: float
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    upper_circuit_paise: int
    lower_circuit_paise: int
    high_52w_paise: int
    low_52w_paise: int

    @property
    def ltp(self) -> float:
        return self.ltp_paise / 100

    @property
    def key(self) -> tuple[int, str]:
        return (self.exchange_type, self.token)


class Depth20Tick(NamedTuple):
    mode: int
    exchange_type: int
    token: str
    exchange_ts_ms: int
    received_ts_ms: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]

    @property
    def key(self) -> tuple[int, str]:
        return (self.exchange_type, self.token)


Tick = LtpTick | QuoteTick | SnapQuoteTick | Depth20Tick

_token_cache: dict[bytes, str] = {}
_TOKEN_CACHE_MAX = 100_000


def _token(raw: bytes) -> str:
    """The token text of a 25-byte NUL-padded field, cached because few tokens repeat."""
    token = _token_cache.get(raw)
    if token is None:
        try:
            token = raw.split(b"\0", 1)[0].decode("ascii")
        except UnicodeDecodeError as exc:
            raise FrameError(f"token field is not ASCII: {raw!r}") from exc
        if not token:
            raise FrameError("token field is empty")
        if len(_token_cache) < _TOKEN_CACHE_MAX:
            _token_cache[raw] = token
    return token


# Hot-path helpers bound once. ``tuple.__new__(Tick, values)`` builds a named tuple
# without the keyword-argument machinery of ``Tick(...)``, about a third faster.
_new = tuple.__new__
_unpack_ltp = LTP_STRUCT.unpack
_unpack_quote = QUOTE_STRUCT.unpack
_cached_token = _token_cache.get
# SnapQuote without its book and circuit tail; the book records read with their leading
# buy/sell flag skipped ("2x"); Depth-20 header and its 10-byte levels.
_unpack_snap_head = struct.Struct(_HEADER + "q" + "qqqddqqqq" + "qqd").unpack_from
_unpack_snap_tail = struct.Struct("<qqqq").unpack_from
_iter_book5 = struct.Struct("<2xqqh").iter_unpack
_unpack_depth_head = struct.Struct(_HEADER).unpack_from
_iter_book20 = struct.Struct("<iih").iter_unpack
_level = partial(_new, BookLevel)


def _decode_checked(frame: bytes) -> Tick:
    """The general path: checks mode and size, then decodes any of the four modes."""
    if not frame:
        raise FrameError("empty frame")
    mode = frame[0]
    size = FRAME_SIZES.get(mode)
    if size is None:
        raise FrameError(f"unknown subscription mode {mode} ({len(frame)} bytes)")
    if len(frame) != size:
        raise FrameError(f"mode {mode} frame is {len(frame)} bytes, expected {size}")
    if mode == MODE_LTP:
        v = _unpack_ltp(frame)
        return _new(LtpTick, (v[0], v[1], _token(v[2]), v[3], v[4], v[5]))
    if mode == MODE_QUOTE:
        v = _unpack_quote(frame)
        return _new(QuoteTick, (v[0], v[1], _token(v[2])) + v[3:])
    if mode == MODE_SNAP_QUOTE:
        v = _unpack_snap_head(frame)
        # Records 0-4 (offset 147) are bids and 5-9 (offset 247) asks, by position, as
        # the Java and JS SDKs read them.
        bids = tuple(map(_level, _iter_book5(frame[147:247])))
        asks = tuple(map(_level, _iter_book5(frame[247:347])))
        head = (v[0], v[1], _token(v[2])) + v[3:]
        return _new(SnapQuoteTick, head + (bids, asks) + _unpack_snap_tail(frame, 347))
    v = _unpack_depth_head(frame)
    bids = tuple(map(_level, _iter_book20(frame[43:243])))
    asks = tuple(map(_level, _iter_book20(frame[243:443])))
    return _new(Depth20Tick, (v[0], v[1], _token(v[2]), v[3], v[4], bids, asks))


def decode(frame: bytes) -> Tick:
    """Decode one binary packet, raising ``FrameError`` for anything malformed.

    LTP and Quote frames with a token seen before take a short path: one length and
    mode check, one unpack, one cache hit. Everything else goes through
    ``_decode_checked``.
    """
    size = len(frame)
    if size == LTP_SIZE and frame[0] == MODE_LTP:
        v = _unpack_ltp(frame)
        token = _cached_token(v[2])
        if token is not None:
            return _new(LtpTick, (MODE_LTP, v[1], token, v[3], v[4], v[5]))
    elif size == QUOTE_SIZE and frame[0] == MODE_QUOTE:
        v = _unpack_quote(frame)
        token = _cached_token(v[2])
        if token is not None:
            return _new(QuoteTick, (MODE_QUOTE, v[1], token) + v[3:])
    return _decode_checked(frame)


def _token_bytes(token: str) -> bytes:
    raw = token.encode("ascii")
    if len(raw) > 24:
        raise ValueError(f"token {token!r} is longer than 24 bytes")
    return raw


def encode_ltp(exchange_type: int, token: str, sequence: int, ts_ms: int, ltp_paise: int) -> bytes:
    return LTP_STRUCT.pack(MODE_LTP, exchange_type, _token_bytes(token), sequence, ts_ms, ltp_paise)


def encode_quote(tick: QuoteTick) -> bytes:
    return QUOTE_STRUCT.pack(MODE_QUOTE, tick.exchange_type, _token_bytes(tick.token), *tick[3:])


def _flat_book5(bids: tuple, asks: tuple) -> list:
    flat: list = []
    for flag, side in ((1, bids), (0, asks)):
        for level in side:
            flat.extend((flag, level.quantity, level.price_paise, level.orders))
    return flat


def encode_snap_quote(tick: SnapQuoteTick) -> bytes:
    if len(tick.bids) != 5 or len(tick.asks) != 5:
        raise ValueError("SnapQuote needs exactly five bids and five asks")
    return SNAP_STRUCT.pack(
        MODE_SNAP_QUOTE,
        tick.exchange_type,
        _token_bytes(tick.token),
        *tick[3:18],
        *_flat_book5(tick.bids, tick.asks),
        *tick[20:24],
    )


def encode_depth_20(tick: Depth20Tick) -> bytes:
    if len(tick.bids) != 20 or len(tick.asks) != 20:
        raise ValueError("Depth-20 needs exactly twenty bids and twenty asks")
    flat = [value for level in tick.bids + tick.asks for value in level]
    return DEPTH_STRUCT.pack(
        MODE_DEPTH_20,
        tick.exchange_type,
        _token_bytes(tick.token),
        tick.exchange_ts_ms,
        tick.received_ts_ms,
        *flat,
    )


def encode(tick: Tick) -> bytes:
    if tick.mode == MODE_LTP:
        return encode_ltp(*tick[1:])
    if tick.mode == MODE_QUOTE:
        return encode_quote(tick)  # type: ignore[arg-type]
    if tick.mode == MODE_SNAP_QUOTE:
        return encode_snap_quote(tick)  # type: ignore[arg-type]
    return encode_depth_20(tick)  # type: ignore[arg-type]


# --- text frames -------------------------------------------------------------------


def subscription_request(
    action: int,
    mode: int,
    tokens_by_exchange: dict[int, list[str]],
    correlation_id: str = "",
) -> str:
    """The JSON text frame that subscribes (action 1) or unsubscribes (0) tokens."""
    if mode not in MODES:
        raise ValueError(f"unknown subscription mode {mode}")
    token_list = [
        {"exchangeType": ex, "tokens": [str(t) for t in tokens]}
        for ex, tokens in sorted(tokens_by_exchange.items())
        if tokens
    ]
    body = {
        "correlationID": correlation_id[:10],
        "action": action,
        "params": {"mode": mode, "tokenList": token_list},
    }
    return json.dumps(body, separators=(",", ":"))


class ServerError(NamedTuple):
    correlation_id: str
    code: str
    message: str


def parse_text(text: str) -> str | ServerError:
    """Return ``"pong"`` for a heartbeat answer, or the server's error frame.

    Raises ``FrameError`` for text that is neither.
    """
    if text == "pong":
        return "pong"
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise FrameError(f"text frame is not JSON: {text[:80]!r}") from exc
    if not isinstance(body, dict) or "errorCode" not in body:
        raise FrameError(f"unexpected text frame: {text[:80]!r}")
    return ServerError(
        str(body.get("correlationID", "")),
        str(body["errorCode"]),
        str(body.get("errorMessage", "")),
    )
