"""Every answer shape of smartapi.md §1.3 / §2 maps to the exception that decides recovery."""

from __future__ import annotations

import json

import pytest

from broker.errors import (
    AmbiguousError,
    BrokerError,
    ConfigurationError,
    ProtocolError,
    RateLimitedError,
    RejectedError,
    SessionExpiredError,
    TransientError,
    classify,
    parse,
)

RATE_TEXT = "Access denied because of exceeding access rate"
HTML_DENIED = "<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY>Access Denied</BODY></HTML>"
HTML_502 = "<html><body><h1>502 Bad Gateway</h1></body></html>"


def a(code: str, message: str = "msg", status: object = False, data: object = None) -> str:
    return json.dumps({"status": status, "message": message, "errorcode": code, "data": data})


def b(code: str, message: str = "Invalid Token") -> str:
    return json.dumps({"success": False, "message": message, "errorCode": code, "data": ""})


CASES = [
    # (route, http status, body, expected class, expected code)
    ("getCandleData", 200, a("AB1004", "Something Went Wrong"), TransientError, "AB1004"),
    ("getOrderBook", 200, a("AB2001"), TransientError, "AB2001"),
    ("getProfile", 200, a("AB2000"), TransientError, "AB2000"),
    ("placeOrder", 200, a("AB1004"), AmbiguousError, "AB1004"),
    ("getProfile", 200, b("AG8001"), SessionExpiredError, "AG8001"),
    ("getProfile", 401, b("AG8001"), SessionExpiredError, "AG8001"),
    ("getProfile", 403, b("AG8002", "Token expired"), SessionExpiredError, "AG8002"),
    ("getProfile", 200, b("AG8003", "Token missing"), SessionExpiredError, "AG8003"),
    ("getRMS", 200, a("AB1010"), SessionExpiredError, "AB1010"),
    ("getRMS", 200, a("AB1011"), SessionExpiredError, "AB1011"),
    ("generateTokens", 200, a("AB8050"), SessionExpiredError, "AB8050"),
    ("generateTokens", 200, b("AB8051"), SessionExpiredError, "AB8051"),
    ("loginByPassword", 200, b("AG8004", "Invalid API Key"), ConfigurationError, "AG8004"),
    (
        "loginByPassword",
        200,
        b("AB1006", "Client Is Block For Trading"),
        ConfigurationError,
        "AB1006",
    ),
    ("loginByPassword", 200, a("AB1000"), ConfigurationError, "AB1000"),
    ("getProfile", 200, a("AB1005", "User Type Must Be USER"), ConfigurationError, "AB1005"),
    ("placeOrder", 200, a("AB4008", "Ordertag length"), RejectedError, "AB4008"),
    ("placeOrder", 200, a("AB1009", "Symbol not found"), RejectedError, "AB1009"),
    ("orderDetails", 200, a("AB1007", "Order not found"), RejectedError, "AB1007"),
    ("placeOrder", 200, a("", "Insufficient funds"), RejectedError, ""),
    # the docs' example uses strings for the booleans
    ("getRMS", 200, a("AB2001", status="false", data="null"), TransientError, "AB2001"),
    # 403 text and HTML pages
    ("getCandleData", 403, RATE_TEXT, RateLimitedError, ""),
    ("placeOrder", 403, RATE_TEXT, RateLimitedError, ""),
    ("loginByPassword", 403, HTML_DENIED, RateLimitedError, ""),
    ("loginByPassword", 200, HTML_DENIED, RateLimitedError, ""),
    ("placeOrder", 200, HTML_DENIED, AmbiguousError, ""),
    ("getOrderBook", 502, HTML_502, TransientError, ""),
    ("placeOrder", 502, HTML_502, AmbiguousError, ""),
    ("getOrderBook", 200, HTML_502, ProtocolError, ""),
    ("placeOrder", 200, HTML_502, AmbiguousError, ""),
    # empty and truncated bodies
    ("getOrderBook", 200, "", ProtocolError, ""),
    ("placeOrder", 200, "", AmbiguousError, ""),
    ("cancelOrder", 200, "", AmbiguousError, ""),
    ("getPosition", 200, '{"status": true, "message": "SUC', ProtocolError, ""),
    ("modifyOrder", 200, '{"status": true, "data": {"orderid"', AmbiguousError, ""),
    ("getPosition", 200, "[1, 2]", ProtocolError, ""),
    ("getPosition", 200, '{"foo": 1}', ProtocolError, ""),
    # other statuses
    ("getOrderBook", 500, "", TransientError, ""),
    ("getOrderBook", 503, a("AB1004"), TransientError, ""),
    ("placeOrder", 500, a("AB1004"), AmbiguousError, ""),
    ("placeOrder", 504, "", AmbiguousError, ""),
    ("getProfile", 401, "", SessionExpiredError, ""),
    ("getProfile", 404, "Not Found", ConfigurationError, ""),
    ("placeOrder", 301, "<html><body>Moved Permanently</body></html>", ConfigurationError, ""),
    ("getOrderBook", 302, "", ConfigurationError, ""),
    ("getProfile", 400, "Bad Request", RejectedError, ""),
    ("getProfile", 429, "slow down", RateLimitedError, ""),
    ("getProfile", 201, a("", status=True, data={"x": 1}), ProtocolError, ""),
]


@pytest.mark.parametrize("route, status, body, expected, code", CASES)
def test_each_answer_shape_maps_to_its_recovery(route, status, body, expected, code):
    error = classify(route, status, body)

    assert type(error) is expected, f"{route} {status} {body[:40]!r} -> {error!r}"
    assert error.code == code
    assert error.route == route


def test_a_success_gives_the_data():
    body = a("", "SUCCESS", status=True, data={"net": "100.0"})

    assert parse("getRMS", 200, body.encode()) == {"net": "100.0"}
    assert classify("getRMS", 200, body) is None


@pytest.mark.parametrize("status, data", [(True, None), ("true", "null"), (True, "")])
def test_null_data_in_any_spelling_is_none(status, data):
    assert parse("getOrderBook", 200, a("", "SUCCESS", status=status, data=data)) is None


def test_a_rate_limit_carries_a_suggested_wait():
    error = classify("getCandleData", 403, RATE_TEXT)

    assert isinstance(error, RateLimitedError)
    assert error.retry_after >= 1.0


def test_the_message_names_route_code_and_text():
    error = classify("placeOrder", 200, a("AB4008", "Ordertag length should not exceed 20"))

    assert str(error) == "placeOrder AB4008: Ordertag length should not exceed 20"
    assert str(classify("getProfile", 503, "")) == "getProfile HTTP 503: server error ''"


def test_a_broker_message_that_echoes_a_token_is_masked():
    jwt = "eyJhbGciOiJIUzUxMiJ9.eyJ1c2VybmFtZSI6IlQxIn0.c2lnbmF0dXJl"
    error = classify("getProfile", 200, b("AG8001", f"Invalid token {jwt}"))

    assert jwt not in str(error)
    assert jwt not in repr(error)


def test_every_exception_is_a_broker_error_with_a_docstring_saying_what_happens_next():
    classes = [
        TransientError,
        ProtocolError,
        RateLimitedError,
        SessionExpiredError,
        RejectedError,
        ConfigurationError,
        AmbiguousError,
    ]

    for cls in classes:
        assert issubclass(cls, BrokerError)
        assert cls.__doc__ and len(cls.__doc__.split()) > 8
    assert issubclass(ProtocolError, TransientError)
