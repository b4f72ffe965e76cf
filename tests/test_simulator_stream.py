"""The simulator's WebSockets against smartapi.md §3: smart-stream and order updates."""

from __future__ import annotations

import json
import struct
import time

import pytest
import websocket

from broker import codec
from simulator.config import DEMO_API_KEY, DEMO_CLIENT_CODE
from simulator.testing import start_simulator

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PONG = 0x1, 0x2, 0x8, 0xA


@pytest.fixture(scope="module")
def sim():
    with start_simulator(enforce_rate_limits=False, tick_rate=25,
                         order_fill_delay=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def login(sim):
    client = sim.client()
    assert client.login().status == 200
    return client


def stream_headers(login, **overrides: str) -> list[str]:
    headers = {
        "Authorization": f"Bearer {login.jwt}", "x-api-key": DEMO_API_KEY,
        "x-client-code": DEMO_CLIENT_CODE, "x-feed-token": login.feed_token,
    }
    headers.update(overrides)
    return [f"{name}: {value}" for name, value in headers.items() if value is not None]


def connect(sim, login, **overrides: str) -> websocket.WebSocket:
    return websocket.create_connection(sim.ws_url, header=stream_headers(login, **overrides),
                                       timeout=5)


@pytest.fixture
def ws(sim, login):
    conn = connect(sim, login)
    yield conn
    conn.close()


def subscribe(ws, mode: int, tokens: list[str], action: int = 1, cid: str = "t1") -> None:
    ws.send(codec.subscription_request(action, mode, {1: tokens}, cid))


def next_frame(ws, opcode: int = OP_BINARY, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op, data = ws.recv_data()
        if op == opcode:
            return data
    raise AssertionError(f"no frame with opcode {opcode} within {timeout} s")


def ticks(ws, count: int) -> list:
    return [codec.decode(next_frame(ws)) for _ in range(count)]


def refused_handshake(sim, login, **overrides: str):
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(sim, login, **overrides)
    return caught.value


# --- handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize("override,reason", [
    ({"x-feed-token": "eyJ.bad.token"}, "Invalid Feed Token"),
    ({"x-client-code": None}, "Invalid Client Code"),
    ({"x-client-code": "S9999"}, "Invalid Client Code"),
    ({"x-api-key": "wrong"}, "Invalid API Key"),
    ({"Authorization": "Bearer eyJ.bad.jwt"}, "Invalid Auth token"),
])
def test_a_bad_handshake_is_401_with_x_error_message(sim, login, override, reason):
    error = refused_handshake(sim, login, **override)

    assert error.status_code == 401
    assert error.resp_headers["x-error-message"] == reason


def test_query_parameters_authenticate_like_headers(sim, login):
    url = (f"{sim.ws_url}?clientCode={DEMO_CLIENT_CODE}&feedToken={login.feed_token}"
           f"&apiKey={DEMO_API_KEY}")

    conn = websocket.create_connection(url, timeout=5)
    subscribe(conn, codec.MODE_LTP, ["3045"])

    assert codec.decode(next_frame(conn)).token == "3045"
    conn.close()


def test_a_jwt_without_the_bearer_prefix_is_accepted(sim, login):
    conn = connect(sim, login, Authorization=login.jwt)

    conn.send("ping")

    assert next_frame(conn, OP_TEXT) == b"pong"
    conn.close()


# --- heartbeat ----------------------------------------------------------------------------


def test_text_ping_is_answered_with_text_pong(ws):
    ws.send("ping")

    assert next_frame(ws, OP_TEXT) == b"pong"


def test_protocol_ping_is_answered_with_a_pong(ws):
    ws.ping("hb")

    op, frame = ws.recv_data_frame(control_frame=True)

    assert op == OP_PONG and frame.data == b"hb"


# --- subscriptions ------------------------------------------------------------------------


def test_ltp_subscription_streams_decodable_frames_with_rising_sequences(ws):
    subscribe(ws, codec.MODE_LTP, ["3045"])

    got = ticks(ws, 4)

    assert all(isinstance(t, codec.LtpTick) and t.token == "3045" and t.exchange_type == 1
               for t in got)
    sequences = [t.sequence for t in got]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4
    assert all(t.ltp_paise % 5 == 0 for t in got)
    assert abs(got[-1].exchange_ts_ms - time.time() * 1000) < 5_000


def test_quote_subscription_streams_quote_frames(ws):
    subscribe(ws, codec.MODE_QUOTE, ["2885"])

    tick = ticks(ws, 2)[-1]

    assert isinstance(tick, codec.QuoteTick) and tick.token == "2885"
    assert tick.low_paise <= tick.ltp_paise <= tick.high_paise
    assert tick.volume > 0 and tick.close_paise == 128500


def test_snap_quote_puts_five_bids_flag_one_then_five_asks_flag_zero(ws):
    subscribe(ws, codec.MODE_SNAP_QUOTE, ["1333"])

    frame = next_frame(ws)

    tick = codec.decode(frame)
    assert isinstance(tick, codec.SnapQuoteTick)
    flags = [struct.unpack_from("<h", frame, 147 + 20 * i)[0] for i in range(10)]
    assert flags == [1] * 5 + [0] * 5
    assert tick.bids[0].price_paise < tick.ltp_paise < tick.asks[0].price_paise
    assert [b.price_paise for b in tick.bids] == sorted((b.price_paise for b in tick.bids),
                                                        reverse=True)


def test_depth_20_streams_twenty_levels_a_side(ws):
    subscribe(ws, codec.MODE_DEPTH_20, ["4963"])

    tick = ticks(ws, 1)[0]

    assert isinstance(tick, codec.Depth20Tick) and tick.token == "4963"
    assert len(tick.bids) == len(tick.asks) == 20


def test_unsubscribe_stops_the_token(ws, sim):
    subscribe(ws, codec.MODE_LTP, ["3045", "2885"])
    ticks(ws, 4)

    subscribe(ws, codec.MODE_LTP, ["3045"], action=0)
    time.sleep(0.1)  # frames already on the wire may still arrive
    ws.settimeout(0.05)
    try:
        while True:
            ws.recv_data()
    except websocket.WebSocketTimeoutException:
        pass
    ws.settimeout(5)
    later = ticks(ws, 8)

    assert {t.token for t in later} == {"2885"}


def test_duplicate_subscribes_are_ignored(ws, sim):
    subscribe(ws, codec.MODE_LTP, ["3045", "3045"])
    ticks(ws, 1)
    before = sim.stats()["subscriptions"]

    subscribe(ws, codec.MODE_LTP, ["3045"])
    ws.send("ping")
    next_frame(ws, OP_TEXT)

    assert sim.stats()["subscriptions"] == before


def test_malformed_json_gets_e1001_with_the_correlation_id(ws):
    ws.send('{"correlationID": "abc123", "action": 1, "params": {"mode": 9}}')
    error = codec.parse_text(next_frame(ws, OP_TEXT).decode())

    ws.send("{not json")
    plain = codec.parse_text(next_frame(ws, OP_TEXT).decode())

    assert error == codec.ServerError("abc123", "E1001", error.message)
    assert plain.code == "E1001"


def test_more_than_a_thousand_tokens_gets_e1002(ws, sim):
    tokens = [str(100_000 + i) for i in range(1001)]

    subscribe(ws, codec.MODE_LTP, tokens, cid="big")
    error = codec.parse_text(next_frame(ws, OP_TEXT).decode())

    assert error.code == "E1002" and error.correlation_id == "big"
    subscribe(ws, codec.MODE_LTP, ["3045"])
    assert codec.decode(next_frame(ws)).token == "3045"  # the connection still works


def test_depth_20_is_only_for_nse_cash_and_fifty_tokens(ws):
    ws.send(codec.subscription_request(1, codec.MODE_DEPTH_20, {2: ["3045"]}, "fo"))
    wrong_segment = codec.parse_text(next_frame(ws, OP_TEXT).decode())
    subscribe(ws, codec.MODE_DEPTH_20, [str(200_000 + i) for i in range(51)], cid="d51")
    too_many = codec.parse_text(next_frame(ws, OP_TEXT).decode())

    assert wrong_segment.code == "E1001" and wrong_segment.correlation_id == "fo"
    assert too_many.code == "E1002" and too_many.correlation_id == "d51"


def wait_for_connections(sim, count: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while sim.stats()["ws_connections"] != count:
        assert time.monotonic() < deadline, "earlier connections did not go away"
        time.sleep(0.02)


def test_a_fourth_connection_is_closed_and_the_first_three_keep_streaming(sim, login):
    wait_for_connections(sim, 0)
    first_three = [connect(sim, login) for _ in range(3)]
    for conn in first_three:
        subscribe(conn, codec.MODE_LTP, ["3045"])

    fourth = connect(sim, login)
    op, data = fourth.recv_data(control_frame=True)

    assert op == OP_CLOSE
    assert struct.unpack("!H", data[:2])[0] == 1008
    assert all(codec.decode(next_frame(c)).token == "3045" for c in first_three)
    assert sim.stats()["ws_connections"] == 3
    for conn in first_three + [fourth]:
        conn.close()


# --- order updates ------------------------------------------------------------------------


def order_ws(sim, jwt: str | None):
    headers = [f"Authorization: Bearer {jwt}"] if jwt else []
    return websocket.create_connection(sim.order_ws_url, header=headers, timeout=5)


def test_order_updates_need_a_bearer_jwt(sim):
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        order_ws(sim, "eyJ.not.valid")

    assert caught.value.status_code == 401
    assert caught.value.resp_headers["x-error-message"]


def test_order_updates_greet_with_ab00_and_push_the_lifecycle(sim, login):
    conn = order_ws(sim, login.jwt)
    hello = json.loads(next_frame(conn, OP_TEXT))

    placed = login.call("placeOrder", {
        "variety": "NORMAL", "tradingsymbol": "INFY-EQ", "symboltoken": "1594",
        "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET",
        "producttype": "INTRADAY", "duration": "DAY", "price": "0", "quantity": "3",
    }).data
    events = [json.loads(next_frame(conn, OP_TEXT)) for _ in range(2)]

    assert hello["order-status"] == "AB00" and hello["user-id"] == DEMO_CLIENT_CODE
    assert hello["status-code"] == "200" and hello["orderData"]["orderid"] == ""
    assert [e["order-status"] for e in events] == ["AB01", "AB05"]
    done = events[-1]["orderData"]
    assert done["orderid"] == placed["orderid"] and done["status"] == "complete"
    assert done["uniqueorderid"] == placed["uniqueorderid"] and done["filledshares"] == "3"
    conn.send("ping")
    assert next_frame(conn, OP_TEXT) == b"pong"
    conn.close()


def test_order_updates_push_modify_cancel_and_reject_codes(sim, login):
    conn = order_ws(sim, login.jwt)
    next_frame(conn, OP_TEXT)  # AB00
    order = {
        "variety": "NORMAL", "tradingsymbol": "TCS-EQ", "symboltoken": "11536",
        "transactiontype": "BUY", "exchange": "NSE", "ordertype": "LIMIT",
        "producttype": "INTRADAY", "duration": "DAY", "price": "100", "quantity": "1",
    }

    placed = login.call("placeOrder", order).data
    login.call("modifyOrder", {**order, "orderid": placed["orderid"], "price": "101"})
    login.call("cancelOrder", {"variety": "NORMAL", "orderid": placed["orderid"]})
    login.call("placeOrder", {**order, "quantity": "-1"})
    events = [json.loads(next_frame(conn, OP_TEXT)) for _ in range(4)]

    assert [e["order-status"] for e in events] == ["AB01", "AB04", "AB02", "AB03"]
    assert events[1]["orderData"]["price"] == 101.0
    assert events[3]["orderData"]["text"]
    conn.close()
