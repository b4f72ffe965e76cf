"""The WebSocket V2 codec against frames built by hand from the reference's offsets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import codec
from broker.codec import (
    BookLevel,
    Depth20Tick,
    FrameError,
    LtpTick,
    QuoteTick,
    ServerError,
    SnapQuoteTick,
    decode,
    encode,
)

# --- golden frames: smartapi.md §3.5, every field placed at its documented offset -----


def _header(size: int, mode: int, exchange_type: int, token: bytes) -> bytearray:
    frame = bytearray(size)
    struct.pack_into("<B", frame, 0, mode)
    struct.pack_into("<B", frame, 1, exchange_type)
    frame[2 : 2 + len(token)] = token  # 25 bytes, NUL padded
    return frame


def golden_ltp() -> bytes:
    frame = _header(51, 1, 1, b"2885")
    struct.pack_into("<q", frame, 27, 987654)  # sequence
    struct.pack_into("<q", frame, 35, 1710909637000)  # exchange timestamp, ms
    struct.pack_into("<q", frame, 43, 128_550)  # LTP, paise
    return bytes(frame)


def _quote_fields(frame: bytearray) -> None:
    struct.pack_into("<q", frame, 27, 11)
    struct.pack_into("<q", frame, 35, 1710909637000)
    struct.pack_into("<q", frame, 43, 80_505)
    struct.pack_into("<q", frame, 51, 25)  # last traded quantity
    struct.pack_into("<q", frame, 59, 80_321)  # average price
    struct.pack_into("<q", frame, 67, 1_234_567)  # volume
    struct.pack_into("<d", frame, 75, 5000.0)  # total buy quantity (double)
    struct.pack_into("<d", frame, 83, 6000.5)  # total sell quantity (double)
    struct.pack_into("<q", frame, 91, 79_900)  # open
    struct.pack_into("<q", frame, 99, 81_000)  # high
    struct.pack_into("<q", frame, 107, 79_500)  # low
    struct.pack_into("<q", frame, 115, 79_800)  # close


def golden_quote() -> bytes:
    frame = _header(123, 2, 1, b"3045")
    _quote_fields(frame)
    return bytes(frame)


def golden_snap_quote() -> bytes:
    frame = _header(379, 3, 2, b"58662")
    struct.pack_into("<B", frame, 0, 3)
    _quote_fields(frame)
    struct.pack_into("<q", frame, 123, 1710909636000)  # last traded timestamp
    struct.pack_into("<q", frame, 131, 777_000)  # open interest
    struct.pack_into("<d", frame, 139, 1.25)  # OI change %, a double
    for i in range(10):  # five bids (flag 1), then five asks (flag 0), 20 bytes each
        base = 147 + 20 * i
        struct.pack_into("<h", frame, base, 1 if i < 5 else 0)
        struct.pack_into("<q", frame, base + 2, 100 + i)  # quantity
        struct.pack_into("<q", frame, base + 10, 80_500 + 5 * i)  # price
        struct.pack_into("<h", frame, base + 18, i + 1)  # orders
    struct.pack_into("<q", frame, 347, 88_500)  # upper circuit
    struct.pack_into("<q", frame, 355, 72_500)
    struct.pack_into("<q", frame, 363, 91_200)  # 52-week high
    struct.pack_into("<q", frame, 371, 60_100)
    return bytes(frame)


def golden_depth_20() -> bytes:
    frame = _header(443, 4, 1, b"1594")
    struct.pack_into("<q", frame, 27, 1710909637000)  # exchange timestamp
    struct.pack_into("<q", frame, 35, 1710909637250)  # packet received time
    for i in range(40):  # 20 bids at 43, then 20 asks at 243; 10 bytes each
        base = 43 + 10 * i
        struct.pack_into("<i", frame, base, 10 * (i + 1))  # quantity int32
        struct.pack_into("<i", frame, base + 4, 158_000 + i)  # price int32
        struct.pack_into("<h", frame, base + 8, i % 7)  # orders int16
    return bytes(frame)


def test_it_decodes_a_hand_built_ltp_frame():
    tick = decode(golden_ltp())

    assert tick == LtpTick(1, 1, "2885", 987654, 1710909637000, 128_550)
    assert tick.ltp == 1285.50
    assert tick.key == (1, "2885")


def test_it_decodes_a_hand_built_quote_frame():
    tick = decode(golden_quote())

    assert isinstance(tick, QuoteTick)
    assert tick[:5] == (2, 1, "3045", 11, 1710909637000)
    assert (tick.ltp_paise, tick.last_traded_qty, tick.avg_price_paise) == (80_505, 25, 80_321)
    assert tick.volume == 1_234_567
    assert (tick.total_buy_qty, tick.total_sell_qty) == (5000.0, 6000.5)
    assert (tick.open_paise, tick.high_paise, tick.low_paise, tick.close_paise) == (
        79_900,
        81_000,
        79_500,
        79_800,
    )


def test_it_decodes_a_hand_built_snap_quote_frame():
    tick = decode(golden_snap_quote())

    assert isinstance(tick, SnapQuoteTick)
    assert (tick.exchange_type, tick.token, tick.close_paise) == (2, "58662", 79_800)
    assert (tick.last_traded_ts, tick.open_interest, tick.oi_change_pct) == (
        1710909636000,
        777_000,
        1.25,
    )
    assert tick.bids[0] == BookLevel(100, 80_500, 1)
    assert tick.bids[4] == BookLevel(104, 80_520, 5)
    assert tick.asks[0] == BookLevel(105, 80_525, 6)
    assert len(tick.bids) == len(tick.asks) == 5
    assert tick[-4:] == (88_500, 72_500, 91_200, 60_100)


def test_it_decodes_a_hand_built_depth_20_frame():
    tick = decode(golden_depth_20())

    assert isinstance(tick, Depth20Tick)
    assert (tick.token, tick.exchange_ts_ms, tick.received_ts_ms) == (
        "1594",
        1710909637000,
        1710909637250,
    )
    assert tick.bids[0] == BookLevel(10, 158_000, 0)
    assert tick.bids[19] == BookLevel(200, 158_019, 19 % 7)
    assert tick.asks[0] == BookLevel(210, 158_020, 20 % 7)
    assert tick.asks[19].price == 1580.39


@pytest.mark.parametrize("build", [golden_ltp, golden_quote, golden_snap_quote, golden_depth_20])
def test_it_encodes_back_to_the_hand_built_bytes(build):
    frame = build()

    assert encode(decode(frame)) == frame


def test_the_cached_token_path_gives_the_same_tick_as_the_first_decode():
    frame = codec.encode_ltp(1, "fresh-token-xyz", 1, 2, 3)

    first, second = decode(frame), decode(frame)

    assert first == second == LtpTick(1, 1, "fresh-token-xyz", 1, 2, 3)
    assert type(second) is LtpTick


# --- malformed frames -------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, reason",
    [
        (b"", "empty"),
        (golden_ltp()[:50], "expected 51"),
        (golden_ltp() + b"\0", "expected 51"),
        (b"\x09" + golden_ltp()[1:], "unknown subscription mode 9"),
        (golden_quote()[:51], "expected 123"),
        (b"\x01\x01" + b"\0" * 49, "token field is empty"),
        (b"\x01\x01" + b"\xff" * 25 + b"\0" * 24, "not ASCII"),
    ],
)
def test_it_rejects_malformed_frames_with_a_reason(frame, reason):
    with pytest.raises(FrameError, match=reason):
        decode(frame)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=500))
def test_random_bytes_raise_nothing_but_frame_error(frame):
    try:
        decode(frame)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(codec.FRAME_SIZES.items())), st.randoms(use_true_random=False))
def test_random_bodies_of_a_valid_size_decode_or_raise_frame_error(mode_size, rnd):
    mode, size = mode_size
    frame = bytes([mode]) + rnd.randbytes(size - 1)
    try:
        tick = decode(frame)
    except FrameError:
        return
    assert tick.mode == mode


# --- round trips --------------------------------------------------------------------

_i64 = st.integers(-(2**63), 2**63 - 1)
_i32 = st.integers(-(2**31), 2**31 - 1)
_i16 = st.integers(-(2**15), 2**15 - 1)
_f64 = st.floats(allow_nan=False)
_token = st.text(alphabet="0123456789ABCDEFGHIJ-", min_size=1, max_size=24)
_exchange = st.sampled_from(sorted(codec.EXCHANGE_TYPES.values()))


@given(_exchange, _token, _i64, _i64, _i64)
def test_ltp_round_trips(exchange_type, token, seq, ts, ltp):
    tick = LtpTick(1, exchange_type, token, seq, ts, ltp)

    assert decode(encode(tick)) == tick


@given(
    _exchange,
    _token,
    st.lists(_i64, min_size=6, max_size=6),
    _f64,
    _f64,
    st.lists(_i64, min_size=4, max_size=4),
)
def test_quote_round_trips(exchange_type, token, ints, buy, sell, ohlc):
    tick = QuoteTick(2, exchange_type, token, *ints, buy, sell, *ohlc)

    assert decode(encode(tick)) == tick


_level5 = st.builds(BookLevel, _i64, _i64, _i16)
_level20 = st.builds(BookLevel, _i32, _i32, _i16)


@settings(max_examples=60)
@given(
    _exchange,
    _token,
    st.lists(_i64, min_size=10, max_size=10),
    _f64,
    st.lists(_level5, min_size=10, max_size=10),
    st.lists(_i64, min_size=4, max_size=4),
)
def test_snap_quote_round_trips(exchange_type, token, ints, oi_change, levels, tail):
    head = [*ints[:6], 1.0, 2.0, *ints[6:10]]
    tick = SnapQuoteTick(
        3, exchange_type, token, *head, 7, 8, oi_change, tuple(levels[:5]), tuple(levels[5:]), *tail
    )

    assert decode(encode(tick)) == tick


@settings(max_examples=40)
@given(_token, _i64, _i64, st.lists(_level20, min_size=40, max_size=40))
def test_depth_20_round_trips(token, ts, received, levels):
    tick = Depth20Tick(4, 1, token, ts, received, tuple(levels[:20]), tuple(levels[20:]))

    assert decode(encode(tick)) == tick


def test_encoding_refuses_a_token_longer_than_the_field():
    with pytest.raises(ValueError, match="longer than 24"):
        codec.encode_ltp(1, "9" * 25, 0, 0, 0)


# --- text frames ----------------------------------------------------------------------


def test_it_builds_a_subscription_request_as_the_reference_shows():
    text = codec.subscription_request(1, 2, {5: ["234230"], 1: ["10626", 5290]}, "abcdefghijkl")

    assert text == (
        '{"correlationID":"abcdefghij","action":1,"params":{"mode":2,"tokenList":'
        '[{"exchangeType":1,"tokens":["10626","5290"]},{"exchangeType":5,"tokens":["234230"]}]}}'
    )


def test_it_reads_pong_and_server_errors_and_rejects_other_text():
    error = codec.parse_text('{"correlationID":"c1","errorCode":"E1002","errorMessage":"limit"}')

    assert codec.parse_text("pong") == "pong"
    assert error == ServerError("c1", "E1002", "limit")
    with pytest.raises(FrameError):
        codec.parse_text("hello")
    with pytest.raises(FrameError):
        codec.parse_text('{"foo": 1}')
