"""The paper market model: the walk, NSE hours when not always open, and CSV replay."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

import websocket

from broker import codec
from simulator.config import SimConfig
from simulator.market import Market
from simulator.testing import start_simulator
from tradebot.market_hours import IST

SUNDAY_NOON = datetime(2026, 11, 29, 12, 0, tzinfo=IST)
MONDAY_TEN = datetime(2026, 11, 30, 10, 0, tzinfo=IST)


def walk(seed: int, steps: int = 200) -> list[int]:
    market = Market(SimConfig(seed=seed))
    state = market.get("3045")
    prices = []
    for i in range(steps):
        state.advance(i)
        prices.append(state.ltp_paise)
    return prices


def test_the_walk_is_seeded_and_stays_on_the_tick_grid():
    first, again, other = walk(42), walk(42), walk(43)

    assert first == again
    assert first != other
    assert all(p % 5 == 0 for p in first)
    assert max(abs(b - a) for a, b in zip(first, first[1:], strict=False)) <= 15


def test_day_numbers_follow_the_walk():
    market = Market(SimConfig())
    state = market.get("2885")

    for i in range(300):
        state.advance(i)

    assert state.low_paise <= state.ltp_paise <= state.high_paise
    assert state.low_paise <= state.avg_paise <= state.high_paise
    assert state.volume > 0 and state.sequence == 300
    bids, asks = state.book(5)
    assert bids[0].price_paise < state.ltp_paise < asks[0].price_paise


def stream_for(sim, api, seconds: float, token: str = "3045") -> list:
    conn = websocket.create_connection(sim.ws_url, timeout=5, header=[
        "x-client-code: S0001", f"x-feed-token: {api.feed_token}"])
    conn.send(codec.subscription_request(1, codec.MODE_LTP, {1: [token]}))
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        conn.settimeout(left)
        try:
            op, data = conn.recv_data()
        except websocket.WebSocketTimeoutException:
            break
        if op == 0x2:
            got.append(codec.decode(data))
    conn.close()
    return got


def test_outside_nse_hours_there_are_no_ticks_and_orders_need_amo():
    with start_simulator(market_always_open=False, tick_rate=30, order_fill_delay=0.01,
                         enforce_rate_limits=False) as sim:
        sim.set_clock(lambda: SUNDAY_NOON)
        api = sim.client()
        api.login()
        order = {"variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045",
                 "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET",
                 "producttype": "DELIVERY", "duration": "DAY", "quantity": "1"}

        quiet = stream_for(sim, api, 0.4)
        normal = api.call("placeOrder", order).data
        amo = api.call("placeOrder", {**order, "variety": "AMO"}).data

        assert quiet == []
        book = {row["orderid"]: row for row in sim.orders()}
        assert book[normal["orderid"]]["status"] == "rejected"
        assert book[amo["orderid"]]["status"] == "after market order req received"

        sim.set_clock(lambda: MONDAY_TEN)
        ticking = stream_for(sim, api, 0.4)
        deadline = time.monotonic() + 3
        while {r["orderid"]: r for r in sim.orders()}[amo["orderid"]]["status"] != "complete":
            assert time.monotonic() < deadline, "the AMO order never filled after the open"
            time.sleep(0.02)

        assert ticking, "ticks flow once the session is open"


def test_replay_drives_the_instrument_from_a_candle_csv(tmp_path):
    csv_path = tmp_path / "sbin.csv"
    csv_path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2026-11-02T09:15:00+05:30,800.00,802.50,799.00,801.00,4000\n"
        "2026-11-02T09:16:00+05:30,801.00,801.50,797.25,798.00,2000\n"
    )
    # open, low, high, close of the bullish candle; open, high, low, close of the bearish
    cycle = [80000, 79900, 80250, 80100, 80100, 80150, 79725, 79800]
    steps = {(a, b) for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True)}

    with start_simulator(replay_csv=str(csv_path), replay_token="3045", tick_rate=40,
                         enforce_rate_limits=False) as sim:
        api = sim.client()
        api.login()
        got = stream_for(sim, api, 0.5)

    assert len(got) >= 8
    prices = [t.ltp_paise for t in got[1:]]  # the first frame is the subscribe snapshot
    assert {(a, b) for a, b in zip(prices, prices[1:], strict=False)} <= steps


def test_engine_steps_shrink_at_high_total_rates_down_to_the_floor():
    from simulator.server import Simulator

    def interval(**overrides) -> float:
        return Simulator(SimConfig(**overrides)).engine_interval

    assert interval(tick_rate=1.5) == 0.02  # 75 updates/s: the longest step
    assert interval(tick_rate=100) == 40 / 5000  # about 40 updates a step
    assert interval(tick_rate=400) == 0.002  # 20,000 updates/s: the floor
    assert interval(tick_rate=400, engine_min_interval=0.004) == 0.004
    assert interval(tick_rate=0) == 0.02


def test_at_twenty_thousand_ticks_a_second_frames_come_in_small_bursts():
    from simulator.config import DEMO_API_KEY, DEMO_CLIENT_CODE

    with start_simulator(enforce_rate_limits=False, tick_rate=400) as sim:
        client = sim.client()
        assert client.login().status == 200
        headers = [f"Authorization: Bearer {client.jwt}", f"x-api-key: {DEMO_API_KEY}",
                   f"x-client-code: {DEMO_CLIENT_CODE}", f"x-feed-token: {client.feed_token}"]
        ws = websocket.create_connection(sim.ws_url, header=headers, timeout=5)
        tokens = [token for _, token, _ in SimConfig().instruments]
        ws.send(codec.subscription_request(1, codec.MODE_LTP, {1: tokens}, "burst"))
        stamps: list[int] = []
        try:
            while len(stamps) < 3000:
                op, data = ws.recv_data()
                if op == 0x2:
                    stamps.append(codec.decode(data)[4])
        finally:
            ws.close()

    per_stamp = sorted(Counter(stamps).values())
    median = per_stamp[len(per_stamp) // 2]
    assert median <= 100, per_stamp  # one 20 ms step would stamp ~400 ticks alike
