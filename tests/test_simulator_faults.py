"""Each injected fault does what it says, and lands in the fault log."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
import websocket

from broker import codec
from simulator.config import DEMO_API_KEY, DEMO_CLIENT_CODE
from simulator.testing import SimulatorError, start_simulator

OP_TEXT, OP_BINARY, OP_PONG = 0x1, 0x2, 0xA


@pytest.fixture
def sim():
    with start_simulator(enforce_rate_limits=False, tick_rate=25,
                         order_fill_delay=0.05) as running:
        yield running


@pytest.fixture
def api(sim):
    client = sim.client()
    assert client.login().status == 200
    return client


def stream(sim, api, tokens=("3045",)) -> websocket.WebSocket:
    conn = websocket.create_connection(sim.ws_url, timeout=5, header=[
        f"Authorization: Bearer {api.jwt}", f"x-api-key: {DEMO_API_KEY}",
        f"x-client-code: {DEMO_CLIENT_CODE}", f"x-feed-token: {api.feed_token}",
    ])
    conn.send(codec.subscription_request(1, codec.MODE_LTP, {1: list(tokens)}))
    return conn


def frames_for(conn, seconds: float) -> list[tuple[int, bytes]]:
    """Every data frame that arrives within ``seconds``."""
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        conn.settimeout(left)
        try:
            got.append(conn.recv_data())
        except websocket.WebSocketTimeoutException:
            break
    conn.settimeout(5)
    return got


def binary(frames) -> list[bytes]:
    return [data for op, data in frames if op == OP_BINARY]


def logged(sim, fault: str, event: str) -> list[dict]:
    return [e for e in sim.fault_log() if e["fault"] == fault and e["event"] == event]


def market_buy(api, timeout: float = 10.0, **extra):
    return api.call("placeOrder", {
        "variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045",
        "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET",
        "producttype": "INTRADAY", "duration": "DAY", "price": "0", "quantity": "1", **extra,
    }, timeout=timeout)


# --- market stream ------------------------------------------------------------------------


def test_drop_ws_closes_the_stream_without_a_close_frame(sim, api):
    conn = stream(sim, api)
    binary(frames_for(conn, 0.2))

    answer = sim.fault("drop_ws")

    assert answer["ok"] and answer["connections"] == 1
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            op, _ = conn.recv_data(control_frame=True)
            assert op != 0x8, "a close frame arrived; the drop should be abrupt"
    assert logged(sim, "drop_ws", "applied")[0]["connections"] == 1


def test_stall_stops_data_but_still_answers_both_pings(sim, api):
    conn = stream(sim, api)
    assert binary(frames_for(conn, 0.3))

    sim.fault("stall", seconds=1.0)
    time.sleep(0.05)
    frames_for(conn, 0.05)  # frames already in flight
    conn.send("ping")
    text_pong = frames_for(conn, 0.3)
    conn.ping("hb")
    op, frame = conn.recv_data_frame(control_frame=True)
    quiet = binary(frames_for(conn, 0.4))
    time.sleep(0.3)
    after = binary(frames_for(conn, 0.5))

    assert (OP_TEXT, b"pong") in text_pong and not binary(text_pong)
    assert op == OP_PONG and frame.data == b"hb"
    assert quiet == []
    assert after, "data resumes when the stall ends"
    assert logged(sim, "stall", "applied")[0]["seconds"] == 1.0
    assert logged(sim, "stall", "affected")[0]["frames_withheld"] > 0


def test_blackhole_answers_no_pings_of_either_kind(sim, api):
    conn = stream(sim, api)
    frames_for(conn, 0.2)

    sim.fault("blackhole", seconds=0.8)
    frames_for(conn, 0.05)
    conn.send("ping")
    conn.ping("hb")
    during = []
    deadline = time.monotonic() + 0.5
    conn.settimeout(0.5)
    try:
        while time.monotonic() < deadline:
            during.append(conn.recv_data(control_frame=True))
    except websocket.WebSocketTimeoutException:
        pass
    conn.settimeout(5)
    time.sleep(0.4)
    conn.send("ping")
    recovered = frames_for(conn, 0.5)

    assert during == []
    assert (OP_TEXT, b"pong") in recovered
    affected = logged(sim, "blackhole", "affected")
    assert {e["unanswered"] for e in affected if "unanswered" in e} == {"text ping",
                                                                        "protocol ping"}
    assert any(e.get("frames_withheld") for e in affected)


def test_refuse_handshake_answers_the_chosen_status_then_recovers(sim, api):
    sim.fault("refuse_handshake", seconds=0.5, status=403)

    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        stream(sim, api)
    time.sleep(0.55)
    conn = stream(sim, api)

    assert caught.value.status_code == 403
    assert caught.value.resp_headers["x-error-message"]
    assert binary(frames_for(conn, 0.3))
    assert logged(sim, "refuse_handshake", "affected")[0]["status"] == 403


@pytest.mark.parametrize("kind", ["truncated", "unknown_mode"])
def test_bad_frames_send_packets_the_codec_rejects(sim, api, kind):
    conn = stream(sim, api)
    frames_for(conn, 0.1)

    sim.fault("bad_frames", kind=kind, count=2)
    got = binary(frames_for(conn, 0.4))

    rejected = 0
    for frame in got:
        try:
            codec.decode(frame)
        except codec.FrameError:
            rejected += 1
    assert rejected == 2
    assert logged(sim, "bad_frames", "affected")[0]["kind"] == kind


# --- REST ---------------------------------------------------------------------------------


def test_rest_error_5xx_hits_only_its_route_and_count(sim, api):
    sim.fault("rest_error", route="getOrderBook", kind="5xx", count=2)

    other = api.call("getProfile")
    hits = [api.call("getOrderBook") for _ in range(3)]

    assert other.status == 200
    assert [r.status for r in hits] == [503, 503, 200]
    assert len(logged(sim, "rest_error", "affected")) == 2


@pytest.mark.parametrize("kind,check", [
    ("AB1004", lambda r: r.status == 200 and r.json["errorcode"] == "AB1004"),
    ("rate_limit", lambda r: r.status == 403
     and r.body == b"Access denied because of exceeding access rate"),
    ("html", lambda r: r.json is None and b"Access Denied" in r.body),
    ("truncated", lambda r: r.status == 200 and r.body and r.json is None),
    ("empty", lambda r: r.status == 200 and r.body == b""),
])
def test_rest_error_kinds_answer_what_they_name(sim, api, kind, check):
    sim.fault("rest_error", route="getCandleData", kind=kind)

    reply = api.call("getCandleData", {"exchange": "NSE", "symboltoken": "3045",
                                       "interval": "ONE_DAY", "fromdate": "2026-11-02 00:00",
                                       "todate": "2026-11-06 00:00"})

    assert check(reply), reply


def test_rest_error_delay_holds_the_answer(sim, api):
    sim.fault("rest_error", route="getProfile", kind="delay", delay_seconds=0.4)

    started = time.monotonic()
    reply = api.call("getProfile")

    assert time.monotonic() - started >= 0.4
    assert reply.status == 200 and reply.json["status"] is True


def test_rest_error_takes_sdk_aliases_and_every_route(sim, api):
    sim.fault("rest_error", route="orderBook", kind="AB1004")
    sim.fault("rest_error", route="*", kind="AB1004")

    assert api.call("getOrderBook").json["errorcode"] == "AB1004"
    assert api.call("getRMS").json["errorcode"] == "AB1004"
    assert api.call("getRMS").json["status"] is True


def test_lose_order_response_books_the_order_but_drops_the_answer(sim, api):
    sim.fault("lose_order_response", count=1)

    with pytest.raises(ConnectionError):
        market_buy(api, ordertag="lost-1")

    (order,) = sim.orders()
    assert order["ordertag"] == "lost-1"
    assert logged(sim, "lose_order_response", "affected")[0]["orderid"] == order["orderid"]
    assert market_buy(api).status == 200  # the fault was used up


def test_lose_order_response_can_hang_until_the_client_gives_up(sim, api):
    sim.fault("lose_order_response", mode="hang", hang_seconds=2)

    with pytest.raises((TimeoutError, socket.timeout)):
        market_buy(api, timeout=0.3)

    assert len(sim.orders()) == 1


def test_reject_orders_books_the_next_order_rejected(sim, api):
    sim.fault("reject_orders", count=1, text="RMS: blocked for test")

    reply = market_buy(api)

    assert reply.json["status"] is True
    row = api.call("orderDetails", suffix=reply.data["uniqueorderid"]).data
    assert row["status"] == "rejected" and row["text"] == "RMS: blocked for test"


def test_expire_sessions_makes_every_token_invalid_until_login(sim, api):
    sim.fault("expire_sessions")

    expired = api.call("getProfile")
    refresh = api.call("generateTokens", {"refreshToken": api.refresh_token})
    api.login()

    assert expired.json["errorCode"] == "AG8001"
    assert refresh.json["errorCode"] == "AG8001"
    assert api.call("getProfile").json["status"] is True
    hit = [e["route"] for e in logged(sim, "expire_sessions", "affected")]
    assert hit == ["getProfile", "generateTokens"]


def test_expire_sessions_also_refuses_the_old_feed_token(sim, api):
    old = api.feed_token
    sim.fault("expire_sessions")

    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        stream(sim, api)

    assert caught.value.status_code == 401
    assert api.feed_token == old
    assert logged(sim, "expire_sessions", "affected")[0]["path"] == "/smart-stream"


# --- restart ------------------------------------------------------------------------------


def test_restart_fault_goes_down_and_comes_back_on_the_same_port(sim, api):
    market_buy(api)
    port = sim.port
    conn = stream(sim, api)

    sim.fault("restart", down_seconds=0.6)
    time.sleep(0.25)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        for _ in range(1000):
            conn.recv_data()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not sim.stats()["listening"]:
        time.sleep(0.05)

    assert sim.port == port
    assert api.call("getOrderBook").data[0]["status"] == "complete"  # session and orders kept
    assert sim.stats()["restarts"] == 1


def test_restart_can_drop_sessions(sim, api):
    sim.restart(down_seconds=0.1, keep_sessions=False)

    assert api.call("getProfile").json["errorCode"] == "AG8001"


# --- control endpoint ---------------------------------------------------------------------


def test_an_unknown_fault_is_refused(sim):
    with pytest.raises(SimulatorError, match="unknown fault"):
        sim.fault("meteor")
    with pytest.raises(SimulatorError, match="kind"):
        sim.fault("rest_error", kind="teapot")


def test_clear_disarms_pending_faults(sim, api):
    sim.fault("rest_error", route="getProfile", kind="5xx", count=5)

    sim.fault("clear")

    assert api.call("getProfile").status == 200


def test_the_control_endpoint_lists_orders_stats_and_log(sim, api):
    market_buy(api)
    sim.fault("stall", seconds=0.01)

    def get(path):
        with urllib.request.urlopen(sim.control_url + path, timeout=5) as response:
            return json.loads(response.read())

    assert get("/orders")[0]["tradingsymbol"] == "SBIN-EQ"
    stats = get("/stats")
    assert stats["logins"] == 1 and stats["route_calls"]["placeOrder"] == 1
    assert get("/faults/log")[-1]["fault"] == "stall"
    assert "stall" in get("/faults")["faults"]
    request = urllib.request.Request(sim.control_url + "/reset", data=b"{}", method="POST")
    urllib.request.urlopen(request, timeout=5).close()
    assert get("/orders") == [] and get("/faults/log") == []
