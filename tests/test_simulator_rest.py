"""The simulator's REST API against smartapi.md §1-§2: envelopes, auth, orders, data."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from simulator.config import DEMO_API_KEY, DEMO_TOTP_SECRET
from simulator.faults import ROUTES
from simulator.ratelimit import LIMITS, RateLimiter
from simulator.rest import ROUTE_PATHS
from simulator.testing import DemoClient, start_simulator

ORDER_BOOK_FIELDS = {
    "variety", "ordertype", "producttype", "duration", "price", "triggerprice", "quantity",
    "disclosedquantity", "squareoff", "stoploss", "trailingstoploss", "tradingsymbol",
    "transactiontype", "exchange", "symboltoken", "instrumenttype", "strikeprice",
    "optiontype", "expirydate", "lotsize", "cancelsize", "averageprice", "filledshares",
    "unfilledshares", "orderid", "text", "status", "orderstatus", "updatetime", "exchtime",
    "exchorderupdatetime", "fillid", "filltime", "parentorderid", "uniqueorderid", "ordertag",
    "exchangeorderid",
}
TRADE_BOOK_FIELDS = {
    "exchange", "producttype", "tradingsymbol", "instrumenttype", "symbolgroup",
    "strikeprice", "optiontype", "expirydate", "marketlot", "precision", "multiplier",
    "tradevalue", "transactiontype", "fillprice", "fillsize", "orderid", "fillid", "filltime",
}
RMS_FIELDS = {
    "net", "availablecash", "availableintradaypayin", "availablelimitmargin", "collateral",
    "m2munrealized", "m2mrealized", "utiliseddebits", "utilisedspan", "utilisedoptionpremium",
    "utilisedholdingsales", "utilisedexposure", "utilisedturnover", "utilisedpayout",
}
POSITION_FIELDS = {
    "exchange", "symboltoken", "producttype", "tradingsymbol", "symbolname", "instrumenttype",
    "priceden", "pricenum", "genden", "gennum", "precision", "multiplier", "boardlotsize",
    "buyqty", "sellqty", "buyamount", "sellamount", "symbolgroup", "strikeprice", "optiontype",
    "expirydate", "lotsize", "cfbuyqty", "cfsellqty", "cfbuyamount", "cfsellamount",
    "buyavgprice", "sellavgprice", "avgnetprice", "netvalue", "netqty", "totalbuyvalue",
    "totalsellvalue", "cfbuyavgprice", "cfsellavgprice", "totalbuyavgprice",
    "totalsellavgprice", "netprice",
}
QUOTE_FULL_FIELDS = {
    "exchange", "tradingSymbol", "symbolToken", "ltp", "open", "high", "low", "close",
    "lastTradeQty", "exchFeedTime", "exchTradeTime", "netChange", "percentChange", "avgPrice",
    "tradeVolume", "opnInterest", "lowerCircuit", "upperCircuit", "totBuyQuan", "totSellQuan",
    "52WeekLow", "52WeekHigh", "depth",
}
JWT_SHAPE = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")


@pytest.fixture(scope="module")
def sim():
    with start_simulator(enforce_rate_limits=False, order_fill_delay=0.05,
                         tick_rate=20) as running:
        yield running


@pytest.fixture
def api(sim):
    """A logged-in client on a simulator with an empty order book."""
    sim.reset()
    client = sim.client()
    assert client.login().status == 200
    return client


def market_buy(api: DemoClient, quantity: str = "1", **extra: str):
    body = {
        "variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045",
        "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET",
        "producttype": "INTRADAY", "duration": "DAY", "price": "0", "squareoff": "0",
        "stoploss": "0", "quantity": quantity, **extra,
    }
    return api.call("placeOrder", body)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.1f} s")


def assert_envelope_a(reply, status: bool = True, code: str = "") -> None:
    assert reply.status == 200
    assert set(reply.json) == {"status", "message", "errorcode", "data"}
    assert reply.json["status"] is status
    assert reply.json["errorcode"] == code


def assert_envelope_b(reply, code: str) -> None:
    assert reply.status == 200  # SimConfig.auth_error_status
    assert reply.json == {"success": False, "message": reply.json["message"],
                          "errorCode": code, "data": ""}


# --- headers and sessions ---------------------------------------------------------------


def test_login_returns_three_jwt_shaped_tokens(sim):
    client = sim.client()

    reply = client.login()

    assert_envelope_a(reply)
    assert reply.json["message"] == "SUCCESS"
    assert set(reply.data) == {"jwtToken", "refreshToken", "feedToken"}
    assert all(JWT_SHAPE.match(value) for value in reply.data.values())
    assert len(set(reply.data.values())) == 3


def test_login_with_a_wrong_totp_is_refused_with_ab1050(sim):
    client = sim.client()
    right = pyotp.TOTP(DEMO_TOTP_SECRET).now()
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"

    reply = client.login(totp=wrong)

    assert_envelope_a(reply, status=False, code="AB1050")
    assert reply.data is None


def test_login_accepts_the_previous_totp_window(sim):
    client = sim.client()
    previous = pyotp.TOTP(DEMO_TOTP_SECRET).at(time.time() - 30)

    assert_envelope_a(client.login(totp=previous))


def test_login_with_a_wrong_pin_is_refused_with_ab1000(sim):
    assert_envelope_a(sim.client().login(pin="9999"), status=False, code="AB1000")


def test_a_missing_or_wrong_api_key_is_shape_b_ag8004(sim):
    client = sim.client()
    client.api_key = None
    assert_envelope_b(client.login(), "AG8004")

    client.api_key = "not-the-key"
    assert_envelope_b(client.call("getProfile"), "AG8004")


def test_a_secure_route_without_authorization_is_shape_b_ag8003(sim):
    client = sim.client()

    assert_envelope_b(client.call("getOrderBook"), "AG8003")


def test_a_secure_route_with_a_bad_jwt_is_shape_b_ag8001(sim):
    client = sim.client()
    client.jwt = "eyJhbGciOiJIUzUxMiJ9.eyJ1c2VybmFtZSI6IlMwMDAxIn0.forged"

    assert_envelope_b(client.call("getProfile"), "AG8001")


def test_an_expired_jwt_is_shape_b_ag8001():
    with start_simulator(token_lifetime_seconds=0.3, tick_rate=1) as sim:
        client = sim.client()
        client.login()
        assert_envelope_a(client.call("getProfile"))

        time.sleep(0.4)

        assert_envelope_b(client.call("getProfile"), "AG8001")


def test_generate_tokens_rotates_all_three_and_kills_the_old_ones(api):
    old_jwt, old_refresh = api.jwt, api.refresh_token

    reply = api.call("generateTokens", {"refreshToken": old_refresh})

    assert_envelope_a(reply)
    assert set(reply.data) == {"jwtToken", "refreshToken", "feedToken"}
    assert reply.data["jwtToken"] != old_jwt
    assert_envelope_b(api.call("getProfile"), "AG8001")
    api.jwt = reply.data["jwtToken"]
    assert_envelope_a(api.call("getProfile"))


def test_generate_tokens_with_a_wrong_refresh_token_fails(api):
    reply = api.call("generateTokens", {"refreshToken": "eyJx.eyJy.z"})

    assert_envelope_a(reply, status=False, code="AB8050")


def test_logout_ends_the_session(api):
    assert_envelope_a(api.call("logout", {"clientcode": "S0001"}))

    assert_envelope_b(api.call("getProfile"), "AG8001")


def test_get_routes_ignore_the_sdk_junk_query_string(api):
    junk = "?%7B%22refreshToken%22:%20%22x%22%7D"

    reply = api.request("GET", ROUTE_PATHS["getProfile"][1] + junk)

    assert_envelope_a(reply)


def test_profile_and_rms_have_the_reference_fields(api):
    profile = api.call("getProfile").data
    rms = api.call("getRMS").data

    assert {"clientcode", "name", "email", "mobileno", "exchanges", "products",
            "lastlogintime", "brokerid"} <= set(profile)
    assert profile["clientcode"] == "S0001"
    assert set(rms) == RMS_FIELDS
    assert all(isinstance(value, str) for value in rms.values())


def test_every_route_name_is_a_fault_route_name():
    assert set(ROUTE_PATHS) == set(ROUTES)


# --- orders -------------------------------------------------------------------------------


def test_order_and_trade_books_are_null_when_empty(api):
    assert_envelope_a(book := api.call("getOrderBook"))
    assert book.data is None
    assert api.call("getTradeBook").data is None
    assert api.call("getPosition").data is None


def test_a_market_order_goes_open_then_complete_and_books_a_trade(api, sim):
    reply = market_buy(api, ordertag="bot-1")

    assert_envelope_a(reply)
    assert set(reply.data) == {"script", "orderid", "uniqueorderid"}
    order_id = reply.data["orderid"]
    row = wait_for(lambda: next((o for o in api.call("getOrderBook").data or []
                                 if o["status"] == "complete"), None))
    assert set(row) == ORDER_BOOK_FIELDS
    assert row["orderid"] == order_id and row["ordertag"] == "bot-1"
    assert row["status"] == row["orderstatus"] == "complete"
    assert isinstance(row["price"], float) and isinstance(row["averageprice"], float)
    assert row["quantity"] == row["filledshares"] == "1" and row["unfilledshares"] == "0"
    assert row["averageprice"] > 0
    trade = api.call("getTradeBook").data[0]
    assert TRADE_BOOK_FIELDS <= set(trade)
    assert trade["orderid"] == order_id and trade["fillsize"] == "1"
    assert trade["fillprice"] == row["averageprice"]
    position = api.call("getPosition").data[0]
    assert POSITION_FIELDS <= set(position)
    assert position["netqty"] == "1" and all(isinstance(v, str) for v in position.values())
    assert sim.orders()[0]["orderid"] == order_id


def test_order_details_by_uniqueorderid_and_ab1007_for_an_orderid(api):
    placed = market_buy(api).data

    found = api.call("orderDetails", suffix=placed["uniqueorderid"])
    missing = api.call("orderDetails", suffix=placed["orderid"])

    assert_envelope_a(found)
    assert found.data["orderid"] == placed["orderid"]
    assert_envelope_a(missing, status=False, code="AB1007")
    assert missing.json["message"] == "Order not found"


def test_a_limit_order_rests_and_modify_keeps_the_uniqueorderid(api, sim):
    state = sim.simulator.market.get("3045")
    far_below = round(state.ltp * 0.5, 2)
    placed = market_buy(api, ordertype="LIMIT", price=str(far_below)).data
    time.sleep(0.2)
    assert api.call("orderDetails", suffix=placed["uniqueorderid"]).data["status"] == "open"

    modified = api.call("modifyOrder", {
        "variety": "NORMAL", "orderid": placed["orderid"], "ordertype": "LIMIT",
        "producttype": "INTRADAY", "duration": "DAY", "price": str(round(state.ltp * 2, 1)),
        "quantity": "2", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045", "exchange": "NSE",
    })

    assert_envelope_a(modified)
    assert modified.data["uniqueorderid"] == placed["uniqueorderid"]
    row = wait_for(lambda: (r := api.call("orderDetails", suffix=placed["uniqueorderid"]).data)
                   and r["status"] == "complete" and r)
    assert row["filledshares"] == "2"
    assert row["averageprice"] <= round(state.ltp * 2, 1)


def test_cancel_stops_a_resting_order(api, sim):
    price = str(round(sim.simulator.market.get("3045").ltp * 0.5, 1))
    placed = market_buy(api, ordertype="LIMIT", price=price).data

    reply = api.call("cancelOrder", {"variety": "NORMAL", "orderid": placed["orderid"]})

    assert_envelope_a(reply)
    assert reply.data["uniqueorderid"] == placed["uniqueorderid"]
    row = api.call("orderDetails", suffix=placed["uniqueorderid"]).data
    assert row["status"] == "cancelled" and row["cancelsize"] == "1"
    again = api.call("cancelOrder", {"variety": "NORMAL", "orderid": placed["orderid"]})
    assert again.json["status"] is False


def test_a_zero_quantity_order_is_accepted_then_rejected_with_a_reason(api):
    reply = market_buy(api, quantity="0")

    assert_envelope_a(reply)
    row = api.call("orderDetails", suffix=reply.data["uniqueorderid"]).data
    assert row["status"] == "rejected" and row["text"]


def test_an_order_beyond_the_paper_capital_is_rejected_for_funds(api):
    reply = market_buy(api, quantity="100000")

    row = api.call("orderDetails", suffix=reply.data["uniqueorderid"]).data
    assert row["status"] == "rejected" and "Insufficient Funds" in row["text"]


def test_a_long_ordertag_is_refused_with_ab4008(api):
    reply = market_buy(api, ordertag="x" * 20)

    assert_envelope_a(reply, status=False, code="AB4008")
    assert api.call("getOrderBook").data is None


def test_an_unknown_token_is_refused_with_ab1009(api):
    reply = market_buy(api, symboltoken="999999")

    assert_envelope_a(reply, status=False, code="AB1009")


# --- market data --------------------------------------------------------------------------


def test_ltp_data_has_the_reference_fields(api):
    reply = api.call("getLtpData", {"exchange": "NSE", "tradingsymbol": "SBIN-EQ",
                                    "symboltoken": "3045"})

    assert_envelope_a(reply)
    assert set(reply.data) == {"exchange", "tradingsymbol", "symboltoken", "open", "high",
                               "low", "close", "ltp"}
    assert reply.data["ltp"] > 0


def test_quote_full_lists_fetched_and_unfetched(api):
    reply = api.call("getMarketData", {"mode": "FULL",
                                       "exchangeTokens": {"NSE": ["3045", "424242"]}})

    assert_envelope_a(reply)
    (row,) = reply.data["fetched"]
    assert set(row) == QUOTE_FULL_FIELDS
    assert len(row["depth"]["buy"]) == len(row["depth"]["sell"]) == 5
    assert row["depth"]["buy"][0]["price"] < row["depth"]["sell"][0]["price"]
    assert reply.data["unfetched"][0]["symbolToken"] == "424242"


def test_quote_ltp_mode_carries_only_identity_and_ltp(api):
    reply = api.call("getMarketData", {"mode": "LTP", "exchangeTokens": {"NSE": ["3045"]}})

    assert set(reply.data["fetched"][0]) == {"exchange", "tradingSymbol", "symbolToken", "ltp"}


def test_quote_refuses_more_than_fifty_tokens(api, sim):
    tokens = [t for _, t, _ in sim.config.instruments] + ["1", "2"]

    reply = api.call("getMarketData", {"mode": "LTP", "exchangeTokens": {"NSE": tokens}})

    assert len(tokens) > 50
    assert_envelope_a(reply, status=False, code="AB2000")
    assert "50 tokens" in reply.json["message"] and reply.data is None


def test_search_scrip_finds_symbols_and_answers_an_empty_list(api):
    found = api.call("searchScrip", {"exchange": "NSE", "searchscrip": "SBIN"})
    nothing = api.call("searchScrip", {"exchange": "NSE", "searchscrip": "NOSUCH"})

    assert found.data == [{"exchange": "NSE", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045"}]
    assert_envelope_a(nothing)
    assert nothing.data == []


def test_the_scrip_master_lists_every_instrument_with_string_values(sim):
    client = sim.client()
    client.api_key = None

    reply = client.call("scripMaster")

    assert reply.status == 200
    assert len(reply.json) == len(sim.config.instruments)
    row = next(r for r in reply.json if r["token"] == "3045")
    assert row == {"token": "3045", "symbol": "SBIN-EQ", "name": "SBIN", "expiry": "",
                   "strike": "-1.000000", "lotsize": "1", "instrumenttype": "",
                   "exch_seg": "NSE", "tick_size": "5.000000"}


def test_holdings_are_null_for_a_paper_account(api):
    assert_envelope_a(reply := api.call("getHolding"))
    assert reply.data is None


# --- rate limits --------------------------------------------------------------------------


def test_bursting_past_a_limit_answers_403_plain_text():
    with start_simulator(tick_rate=1) as sim:
        client = sim.client()
        assert client.login().status == 200

        replies = [client.call("getOrderBook") for _ in range(3)]

        assert replies[0].status == 200
        limited = replies[-1]
        assert limited.status == 403
        assert limited.body == b"Access denied because of exceeding access rate"
        assert limited.json is None
        assert sim.stats()["rate_limited"]["getOrderBook"] >= 1
        time.sleep(1.05)
        assert client.call("getOrderBook").status == 200


def test_login_is_limited_to_one_per_second():
    with start_simulator(tick_rate=1) as sim:
        client = sim.client()

        first, second = client.login(), client.login()

        assert first.status == 200 and second.status == 403
        assert sim.stats()["logins"] == 1


def test_the_api_key_header_is_checked_on_every_call(sim):
    client = DemoClient(sim.rest_url, DEMO_TOTP_SECRET, api_key=DEMO_API_KEY)
    client.login()
    client.api_key = "wrong"

    assert_envelope_b(client.call("getRMS"), "AG8004")


def test_a_burst_of_orders_early_in_a_minute_blocks_the_rest_of_that_minute():
    limiter = RateLimiter()
    # 20 a second (the per-second cap, never exceeded) for 30 seconds.
    stamps = [second + k * 0.04 for second in range(30) for k in range(20)]

    admitted = sum(limiter.allow("placeOrder", now=t) for t in stamps)

    assert admitted == 500  # smartapi.md §2.2: 500 a minute
    assert not limiter.allow("placeOrder", now=59.99)
    assert limiter.allow("placeOrder", now=60.0)  # the first call left the window


def test_candles_admit_three_a_second():
    limiter = RateLimiter()

    answers = [limiter.allow("getCandleData", now=t) for t in (0.0, 0.1, 0.2, 0.3, 1.0)]

    assert LIMITS["getCandleData"] == (3, 180, 5000)
    assert answers == [True, True, True, False, True]


def test_orders_are_held_to_1000_an_hour_across_minutes():
    limiter = RateLimiter()
    stamps = [minute * 60 + k * 0.1 for minute in range(3) for k in range(500)]

    admitted = sum(limiter.allow("placeOrder", now=t) for t in stamps)

    assert LIMITS["placeOrder"] == (20, 500, 1000)
    assert admitted == 1000  # two full minutes, then the hour window is full
    assert not limiter.allow("placeOrder", now=3599.0)
    assert limiter.allow("placeOrder", now=3600.5)
