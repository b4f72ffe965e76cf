"""SmartApiClient against a real local HTTP server that answers in every broken way."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from broker.errors import (
    AmbiguousError,
    ConfigurationError,
    ProtocolError,
    RateLimitedError,
    RejectedError,
    SessionExpiredError,
    TransientError,
)
from broker.limiter import RateLimiter, RateLimitTimeout, Window
from broker.rest import SmartApiClient
from broker.testing import FakeAngel, Reply, envelope_a, envelope_b
from tradebot.embedded_redis import EmbeddedRedis, free_port
from tradebot.market_hours import NaiveDatetimeError

ORDER = {
    "variety": "NORMAL",
    "tradingsymbol": "SBIN-EQ",
    "symboltoken": "3045",
    "transactiontype": "BUY",
    "exchange": "NSE",
    "ordertype": "MARKET",
    "producttype": "INTRADAY",
    "duration": "DAY",
    "price": 0,
    "quantity": 1,
    "ordertag": "tb-000123",
}


@pytest.fixture
def fake():
    with FakeAngel() as server:
        yield server


def make_client(url: str, api_key: str = "test-api-key-123", **kw) -> SmartApiClient:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("sleep", lambda seconds: None)
    return SmartApiClient(
        url,
        api_key,
        client_local_ip="192.168.1.10",
        client_public_ip="203.0.113.7",
        mac="aa:bb:cc:dd:ee:ff",
        **kw,
    )


@pytest.fixture
def client(fake):
    api = make_client(fake.url)
    data = api.login(fake.client_code, fake.pin, pyotp.TOTP(fake.totp_secret).now())
    api.set_jwt(data["jwtToken"])
    yield api
    api.close()


def test_it_sends_the_reference_headers_and_the_bearer_jwt(fake, client):
    client.get_profile()

    login = fake.seen("loginByPassword")[0].headers
    profile = fake.seen("getProfile")[0].headers
    assert {
        k: profile[k]
        for k in (
            "content-type",
            "accept",
            "x-usertype",
            "x-sourceid",
            "x-clientlocalip",
            "x-clientpublicip",
            "x-macaddress",
            "x-privatekey",
        )
    } == {
        "content-type": "application/json",
        "accept": "application/json",
        "x-usertype": "USER",
        "x-sourceid": "WEB",
        "x-clientlocalip": "192.168.1.10",
        "x-clientpublicip": "203.0.113.7",
        "x-macaddress": "aa:bb:cc:dd:ee:ff",
        "x-privatekey": "test-api-key-123",
    }
    assert profile["authorization"] == f"Bearer {client.jwt}"
    assert "authorization" not in login


def test_login_returns_the_three_tokens(fake):
    api = make_client(fake.url)
    totp = pyotp.TOTP(fake.totp_secret).now()

    data = api.login(fake.client_code, fake.pin, totp)

    assert set(data) >= {"jwtToken", "refreshToken", "feedToken"}
    assert fake.seen("loginByPassword")[0].body == {
        "clientcode": fake.client_code,
        "password": fake.pin,
        "totp": totp,
    }


def test_a_secure_call_without_a_session_is_refused_before_sending(fake):
    api = make_client(fake.url)

    with pytest.raises(SessionExpiredError, match="no session"):
        api.get_rms()
    assert fake.requests == []


def test_a_wrong_api_key_is_a_configuration_error(fake):
    api = make_client(fake.url, api_key="wrong")

    with pytest.raises(ConfigurationError) as caught:
        api.login(fake.client_code, fake.pin, "123456")
    assert caught.value.code == "AG8004"


def test_an_expired_jwt_is_session_expired(fake, client):
    fake.expire_all()

    with pytest.raises(SessionExpiredError) as caught:
        client.get_profile()
    assert caught.value.code == "AG8001"


@pytest.mark.parametrize(
    "reply, expected",
    [
        (Reply(body=envelope_a(ok=False, code="AB1004")), AmbiguousError),
        (Reply(status=500, body="oops", content_type="text/plain"), AmbiguousError),
        (
            Reply(status=502, body="<html>Bad Gateway</html>", content_type="text/html"),
            AmbiguousError,
        ),
        (Reply(body=""), AmbiguousError),
        (Reply(body='{"status": true, "data": {"ord'), AmbiguousError),
        (Reply(body=b'{"status": true}', declared_length=400), AmbiguousError),
        (Reply(drop=True), AmbiguousError),
        (
            Reply(
                status=403,
                body="Access denied because of exceeding access rate",
                content_type="text/plain",
            ),
            RateLimitedError,
        ),
        (Reply(body=envelope_a(ok=False, code="AB4008", message="Ordertag length")), RejectedError),
        (Reply(body=envelope_b("AG8001")), SessionExpiredError),
    ],
    ids=[
        "AB1004",
        "500",
        "502-html",
        "empty",
        "truncated-json",
        "cut-off-body",
        "reset",
        "403-text",
        "AB4008",
        "AG8001",
    ],
)
def test_place_order_answers_map_to_the_right_recovery(fake, client, reply, expected):
    fake.script("placeOrder", reply)

    with pytest.raises(expected):
        client.place_order(ORDER)
    assert len(fake.seen("placeOrder")) == 1  # an order call is never repeated


def test_a_read_timeout_on_place_order_is_ambiguous(fake):
    api = make_client(fake.url, timeout=0.3)
    api.set_jwt(
        api.login(fake.client_code, fake.pin, pyotp.TOTP(fake.totp_secret).now())["jwtToken"]
    )
    fake.script("placeOrder", Reply(delay=1.0, body=envelope_a({"orderid": "1"})))

    with pytest.raises(AmbiguousError, match="ReadTimeout"):
        api.place_order(ORDER)


def test_a_read_timeout_on_a_read_is_transient(fake):
    api = make_client(fake.url, timeout=0.3, read_retries=0)
    api.set_jwt(
        api.login(fake.client_code, fake.pin, pyotp.TOTP(fake.totp_secret).now())["jwtToken"]
    )
    fake.script("getOrderBook", Reply(delay=1.0, body=envelope_a([])))

    with pytest.raises(TransientError, match="timed out"):
        api.get_order_book()


def test_connection_refused_is_transient_even_for_an_order():
    api = make_client(f"http://127.0.0.1:{free_port()}", read_retries=0)
    api.set_jwt("eyJ.x.y")

    with pytest.raises(TransientError, match="not sent") as order:
        api.place_order(ORDER)
    with pytest.raises(TransientError, match="not sent"):
        api.get_rms()
    assert not isinstance(order.value, AmbiguousError)


def test_a_connect_timeout_is_transient_for_an_order():
    # A listening socket whose accept queue is full never completes a handshake.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(0)
        fillers = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(blocker.getsockname())
            fillers.append(filler)
        api = make_client(f"http://127.0.0.1:{blocker.getsockname()[1]}", connect_timeout=0.3)
        api.set_jwt("eyJ.x.y")
        try:
            with pytest.raises(TransientError, match="not sent"):
                api.place_order(ORDER)
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.parametrize(
    "reply, expected",
    [
        (Reply(body=envelope_a(ok=False, code="AB1004")), TransientError),
        (Reply(body=""), ProtocolError),
        (Reply(status=503, body=""), TransientError),
        (
            Reply(body="<html><body>Access Denied</body></html>", content_type="text/html"),
            RateLimitedError,
        ),
    ],
    ids=["AB1004", "empty", "503", "html-denied"],
)
def test_a_read_is_retried_then_gives_up_with_the_last_error(fake, client, reply, expected, caplog):
    fake.script("getRMS", reply, reply, reply)

    with caplog.at_level(logging.WARNING, logger="broker.rest"):
        with pytest.raises(expected):
            client.get_rms()

    assert len(fake.seen("getRMS")) == 3
    assert "retry 1 of 2" in caplog.text and "retry 2 of 2" in caplog.text
    assert "giving up after 3 attempts" in caplog.text


def test_a_read_recovers_when_the_fault_passes(fake, client):
    fake.script("getRMS", Reply(body=envelope_a(ok=False, code="AB2001")))

    assert client.get_rms() == {"route": "getRMS"}
    assert len(fake.seen("getRMS")) == 2


def test_books_with_null_data_or_not_found_codes_are_empty_lists(fake, client):
    fake.script("getTradeBook", Reply(body=envelope_a(ok=False, code="AB1014")))
    fake.script(
        "getHolding",
        Reply(body={"status": "true", "message": "SUCCESS", "errorcode": "", "data": "null"}),
    )

    assert client.get_order_book() == []
    assert client.get_trade_book() == []
    assert client.get_position() == []
    assert client.get_holding() == []


@pytest.mark.parametrize("length", [20, 21])
def test_an_ordertag_of_twenty_or_more_is_refused_before_sending(fake, client, length):
    # smartapi.md §1.6: ordertag must be < 20 characters, else AB4008.
    with pytest.raises(RejectedError, match=f"{length} characters") as caught:
        client.place_order({**ORDER, "ordertag": "x" * length})

    assert caught.value.code == "AB4008"
    assert fake.seen("placeOrder") == []


def test_place_order_sends_strings_and_returns_the_order_ids(fake, client):
    data = client.place_order({**ORDER, "ordertag": "t" * 19, "triggerprice": None})

    body = fake.seen("placeOrder")[0].body
    assert data == {"script": "SBIN-EQ", "orderid": "000001", "uniqueorderid": "u-000001"}
    assert body["quantity"] == "1" and body["price"] == "0"
    assert "triggerprice" not in body


def test_order_details_uses_the_unique_order_id_in_the_path(fake, client):
    client.order_details("u-000001")

    assert fake.seen("orderDetails")[0].path.endswith("/order/v1/details/u-000001")


def test_cancel_and_modify_send_their_bodies(fake, client):
    client.cancel_order("NORMAL", "000001")
    client.modify_order({"variety": "NORMAL", "orderid": "000001", "price": 801.5})

    assert fake.seen("cancelOrder")[0].body == {"variety": "NORMAL", "orderid": "000001"}
    assert fake.seen("modifyOrder")[0].body["price"] == "801.5"


def test_market_quote_splits_tokens_into_requests_of_fifty(fake, client):
    tokens = {"NSE": [str(n) for n in range(70)], "NFO": [str(n) for n in range(1000, 1050)]}

    result = client.market_quote("FULL", tokens)

    sent = [r.body["exchangeTokens"] for r in fake.seen("quote")]
    assert [sum(len(v) for v in chunk.values()) for chunk in sent] == [50, 50, 20]
    assert len(result["fetched"]) == 120
    assert {q["symbolToken"] for q in result["fetched"]} == {
        *tokens["NSE"],
        *tokens["NFO"],
    }


def test_a_quote_answer_without_fetched_and_unfetched_is_a_protocol_error(fake, client):
    fake.script("quote", Reply(body=envelope_a(["not", "an", "object"])))

    with pytest.raises(ProtocolError, match="quote.*expected fetched/unfetched, got a list"):
        client.market_quote("LTP", {"NSE": ["3045"]})


def test_candle_dates_are_sent_in_ist_minutes(fake, client):
    start = datetime(2026, 1, 1, 3, 45, 30, tzinfo=UTC)  # 09:15:30 IST

    client.get_candle_data("NSE", "3045", "ONE_MINUTE", start, start + timedelta(hours=6))

    assert fake.seen("getCandleData")[0].body == {
        "exchange": "NSE",
        "symboltoken": "3045",
        "interval": "ONE_MINUTE",
        "fromdate": "2026-01-01 09:15",
        "todate": "2026-01-01 15:15",
    }


def test_candles_refuse_naive_datetimes_and_overlong_ranges(fake, client):
    naive = datetime(2026, 1, 1, 9, 15)
    aware = datetime(2026, 1, 1, 9, 15, tzinfo=UTC)

    with pytest.raises(NaiveDatetimeError):
        client.get_candle_data("NSE", "3045", "ONE_MINUTE", naive, aware)
    with pytest.raises(ValueError, match="30 days"):
        client.get_candle_data("NSE", "3045", "ONE_MINUTE", aware, aware + timedelta(days=31))
    assert fake.seen("getCandleData") == []


def test_the_api_key_is_masked_in_the_repr(fake):
    assert "test-api-key-123" not in repr(make_client(fake.url))


@pytest.fixture
def limiter():
    import tempfile
    from pathlib import Path

    import redis

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp)).start()
        connection = redis.Redis.from_url(server.url, decode_responses=True)
        yield RateLimiter(connection, {"orders": (Window(2, 60.0, reserve=1),)})
        connection.close()
        server.stop()


def test_every_call_goes_through_the_limiter_first(fake, limiter):
    api = make_client(fake.url, limiter=limiter, limiter_timeout=0.2)
    api.set_jwt(
        api.login(fake.client_code, fake.pin, pyotp.TOTP(fake.totp_secret).now())["jwtToken"]
    )

    api.place_order(ORDER)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        api.place_order(ORDER)  # the one unreserved slot is used
    api.cancel_order("NORMAL", "000001")  # cancels may use the reserve

    assert time.monotonic() - started < 1.0
    assert len(fake.seen("placeOrder")) == 1
    assert len(fake.seen("cancelOrder")) == 1


def test_a_rate_limit_refusal_holds_the_shared_limiter_for_every_lane(fake, limiter):
    api = make_client(fake.url, limiter=limiter, limiter_timeout=0.2)
    api.set_jwt(
        api.login(fake.client_code, fake.pin, pyotp.TOTP(fake.totp_secret).now())["jwtToken"]
    )
    fake.script(
        "placeOrder",
        Reply(status=403, body="Access denied because of exceeding access rate",
              content_type="text/plain"),
    )

    with pytest.raises(RateLimitedError):
        api.place_order(ORDER)

    # The reserved lane still had its slot: only the hold keeps cancels back as well.
    assert limiter.try_acquire("orders", "cancel") > 0
