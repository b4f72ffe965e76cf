"""The broker's exception tree, and the one place Angel One's answers are translated into it.

Every failure of a SmartAPI call becomes exactly one of these classes, and the class alone
decides what the caller does next:

    BrokerError
    ├── TransientError        retry with backoff (reads; orders only when never sent)
    │   └── ProtocolError     an unreadable body on a read: retried like a transient fault
    ├── RateLimitedError      wait ``retry_after`` seconds, never re-login
    │   └── RateLimitTimeout  (broker.limiter) our own limiter had no slot in time
    ├── SessionExpiredError   refresh the session (or log in again), then retry once
    ├── RejectedError         the request itself is wrong or refused: never retried
    ├── ConfigurationError    credentials / api key / account unusable: stop, alert a human
    └── AmbiguousError        an order call whose outcome is unknown: reconcile by ordertag

``parse`` turns an HTTP answer (status and body) into the ``data`` payload or raises;
``classify`` is the same but returns the exception instead of raising it; ``from_request_
exception`` translates a ``requests`` exception, knowing whether the request went out.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import requests
import urllib3.exceptions

from tradebot.logging import mask_text

# Routes whose effect is not idempotent: a lost answer leaves the outcome unknown.
NON_IDEMPOTENT_ROUTES = frozenset(
    {
        "placeOrder",
        "modifyOrder",
        "cancelOrder",
        "convertPosition",
        "createRule",
        "modifyRule",
        "cancelRule",
    }
)

# Broker codes (smartapi.md §2.1) by the recovery they call for.
SESSION_CODES = frozenset({"AG8001", "AG8002", "AG8003", "AB1010", "AB1011", "AB8050", "AB8051"})
CONFIGURATION_CODES = frozenset(
    {"AG8004", "AB1000", "AB1001", "AB1002", "AB1005", "AB1006", "AB1031", "AB1032"}
)
# Generic back-office faults: retried on reads; on an order the order may exist.
TRANSIENT_CODES = frozenset({"AB1004", "AB2000", "AB2001", "AB1018"})
# "Order / trade / holding / position not found": an empty result on the list routes.
EMPTY_RESULT_CODES = frozenset({"AB1013", "AB1014", "AB1015", "AB1016"})

RATE_LIMIT_TEXT = "exceeding access rate"
DEFAULT_RATE_LIMIT_WAIT = 1.0  # seconds; the per-second windows are the usual culprit
LOGIN_BURST_WAIT = 2.0  # the HTML "Access Denied" page comes from a burst of logins
_MESSAGE_LIMIT = 200


class BrokerError(Exception):
    """A SmartAPI call failed. Only its subclasses are raised; each says what happens next."""

    def __init__(
        self,
        message: str,
        *,
        route: str = "",
        code: str = "",
        http_status: int | None = None,
    ) -> None:
        # Broker messages are short English text; mask anyway in case one echoes a token.
        self.message = mask_text(str(message))[:_MESSAGE_LIMIT]
        self.route = route
        self.code = code
        self.http_status = http_status
        super().__init__(self.message)

    def __str__(self) -> str:
        tags = [self.code] if self.code else []
        if self.http_status not in (None, 200):
            tags.append(f"HTTP {self.http_status}")
        head = " ".join([self.route or "broker", *tags])
        return f"{head}: {self.message}" if self.message else head

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransientError(BrokerError):
    """A passing fault (timeout before sending, refused connection, 5xx, AB1004 on a read).

    Reads are retried with exponential backoff and jitter, a few attempts; an order call
    raises this only when the request provably never left, so re-sending it is safe.
    """


class ProtocolError(TransientError):
    """A read answered with a body that is not a SmartAPI envelope (empty, truncated, HTML).

    Treated as transient: the read is retried with backoff; persistent cases are logged.
    """


class RateLimitedError(BrokerError):
    """Angel refused the call for exceeding its rate (403 text or an "Access Denied" page).

    The caller waits ``retry_after`` seconds (or what the shared limiter says) and tries
    again. The session is fine: never log in again because of this.
    """

    def __init__(self, message: str, *, retry_after: float = DEFAULT_RATE_LIMIT_WAIT, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class SessionExpiredError(BrokerError):
    """The JWT or refresh token is no longer accepted (AG8001/AG8002/AB1010/AB8050 ...).

    ``broker.session`` refreshes the tokens (full TOTP login if the refresh is refused)
    and the call is retried once; a second failure propagates.
    """


class RejectedError(BrokerError):
    """Angel understood the request and refused it (validation or business rule).

    Never retried: the same request would be refused again. Orders are marked rejected.
    """


class ConfigurationError(BrokerError):
    """Credentials, api key, account or URL are unusable (AG8004, AB1000, AB1006 ...).

    Nothing is retried. The process reports it at ERROR level and a human must act.
    """


class AmbiguousError(BrokerError):
    """An order call was sent and its outcome is unknown (read timeout, reset, 5xx, no body).

    Nothing is re-sent. The order may exist: the orders module marks the intent UNKNOWN
    and looks for its ``ordertag`` in the order book / order updates before anything else.
    """


def _text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def _looks_like_html(text: str, content_type: str) -> bool:
    head = text.lstrip()[:15].lower()
    return "html" in content_type.lower() or head.startswith(("<!doctype", "<html", "<"))


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class _ErrorTags(TypedDict):
    route: str
    code: str
    http_status: int | None


def error_for_code(
    route: str, code: str, message: str, http_status: int | None = 200
) -> BrokerError:
    """The exception for a broker error code on ``route`` (smartapi.md §2.1)."""
    code = (code or "").strip().upper()
    kw: _ErrorTags = {"route": route, "code": code, "http_status": http_status}
    if code in SESSION_CODES:
        return SessionExpiredError(message, **kw)
    if code in CONFIGURATION_CODES:
        return ConfigurationError(message, **kw)
    if code in TRANSIENT_CODES:
        if route in NON_IDEMPOTENT_ROUTES:
            return AmbiguousError(message, **kw)
        return TransientError(message, **kw)
    return RejectedError(message or "refused without a message", **kw)


def _unreadable(route: str, http_status: int, why: str) -> BrokerError:
    """An answer without a usable envelope: unknown outcome for orders, retry for reads."""
    if route in NON_IDEMPOTENT_ROUTES:
        return AmbiguousError(why, route=route, http_status=http_status)
    return ProtocolError(why, route=route, http_status=http_status)


def _error_without_envelope(route: str, status: int, text: str, content_type: str):
    """Map an answer that carries no JSON envelope, or ``None`` to go on parsing."""
    lowered = text.lower()
    if status in (403, 429) and RATE_LIMIT_TEXT in lowered:
        return RateLimitedError(text.strip(), route=route, http_status=status)
    if text.strip() and _looks_like_html(text, content_type) and "access denied" in lowered:
        # The gateway's page for login bursts. A 403 was refused before the OMS saw it;
        # with any other status an order call cannot be sure.
        if status == 403 or route not in NON_IDEMPOTENT_ROUTES:
            return RateLimitedError(
                "HTML Access Denied page",
                route=route,
                http_status=status,
                retry_after=LOGIN_BURST_WAIT,
            )
        return AmbiguousError("HTML Access Denied page", route=route, http_status=status)
    if status == 429:
        return RateLimitedError(f"HTTP 429 {text[:80]!r}", route=route, http_status=status)
    if status >= 500:
        why = f"server error {text.strip()[:80]!r}"
        if route in NON_IDEMPOTENT_ROUTES:
            return AmbiguousError(why, route=route, http_status=status)
        return TransientError(why, route=route, http_status=status)
    return None


def _error_for_status(route: str, status: int, text: str) -> BrokerError:
    """A non-200 answer whose body is no envelope."""
    snippet = text.strip()[:80]
    if status == 401:
        return SessionExpiredError(f"unauthorised {snippet!r}", route=route, http_status=status)
    if 300 <= status < 400:
        # Redirects are not followed (a POST would turn into a GET); the URL is wrong,
        # e.g. http:// or the old host name.
        return ConfigurationError(
            "redirected; set ANGEL_REST_URL to the final https:// root",
            route=route,
            http_status=status,
        )
    if status in (404, 405):
        return ConfigurationError(
            f"no such route (check ANGEL_REST_URL) {snippet!r}", route=route, http_status=status
        )
    if status == 408:
        return TransientError(
            "server timed out reading the request", route=route, http_status=status
        )
    return RejectedError(f"refused {snippet!r}", route=route, http_status=status)


def parse(
    route: str,
    http_status: int,
    body: bytes | str | None,
    *,
    content_type: str = "",
) -> Any:
    """The ``data`` of a successful answer, else raise the matching ``BrokerError``.

    Handles envelope A (status/message/errorcode/data, also with "true"/"false"/"null"
    strings), envelope B (success/message/errorCode/data ""), the 403 rate-limit text, HTML
    error pages, empty or truncated bodies and non-200 statuses (smartapi.md §1.3, §2).
    """
    text = _text(body)
    error = _error_without_envelope(route, http_status, text, content_type)
    if error is not None:
        raise error

    if not text.strip():
        if http_status != 200:
            raise _error_for_status(route, http_status, text)
        raise _unreadable(route, http_status, "empty body")
    try:
        envelope = json.loads(text)
    except ValueError:
        if http_status != 200:
            raise _error_for_status(route, http_status, text) from None
        what = "HTML page" if _looks_like_html(text, content_type) else "unparseable body"
        raise _unreadable(route, http_status, f"{what} {text.strip()[:60]!r}") from None
    if not isinstance(envelope, dict):
        raise _unreadable(route, http_status, f"body is a JSON {type(envelope).__name__}")

    if "status" in envelope:  # envelope A
        ok = _is_true(envelope["status"])
        code = envelope.get("errorcode") or envelope.get("errorCode") or ""
    elif "success" in envelope:  # envelope B
        ok = _is_true(envelope["success"])
        code = envelope.get("errorCode") or envelope.get("errorcode") or ""
    else:
        if http_status != 200:
            raise _error_for_status(route, http_status, text)
        raise _unreadable(route, http_status, "JSON without status or success")

    message = str(envelope.get("message") or "")
    if ok and not code:
        if http_status != 200:
            # A success body on an error status: trust neither; the SDK-js trusts only 200.
            raise _unreadable(route, http_status, f"success body with HTTP {http_status}")
        data = envelope.get("data")
        return None if data in ("null", "") else data
    if not code and http_status != 200:
        raise _error_for_status(route, http_status, message)
    raise error_for_code(route, str(code), message, http_status)


def classify(
    route: str,
    http_status: int,
    body: bytes | str | None,
    *,
    content_type: str = "",
) -> BrokerError | None:
    """The exception ``parse`` would raise for this answer, or ``None`` for a success."""
    try:
        parse(route, http_status, body, content_type=content_type)
    except BrokerError as error:
        return error
    return None


def _chain(exc: BaseException):
    """``exc`` and everything it wraps (requests -> urllib3 -> socket)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nested, BaseException):
                todo.append(nested)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))


_NOT_SENT = (
    urllib3.exceptions.NewConnectionError,  # refused, unreachable, DNS failure
    urllib3.exceptions.ConnectTimeoutError,
    ConnectionRefusedError,
)


def was_never_sent(exc: BaseException) -> bool:
    """True when the failure happened while connecting, before any byte of the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(link, _NOT_SENT) for link in _chain(exc))


_BAD_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
)


def from_request_exception(route: str, exc: requests.RequestException) -> BrokerError:
    """Translate a ``requests`` failure. Connect failures are safe to retry on any route;
    failures after sending leave an order call's outcome unknown."""
    name = type(exc).__name__
    if was_never_sent(exc):
        return TransientError(f"could not connect ({name}); request not sent", route=route)
    if isinstance(exc, _BAD_URL):
        return ConfigurationError(f"bad URL ({name}); check ANGEL_REST_URL", route=route)
    if route in NON_IDEMPOTENT_ROUTES:
        return AmbiguousError(f"sent, then {name}; outcome unknown", route=route)
    if isinstance(exc, requests.exceptions.Timeout):
        return TransientError(f"read timed out ({name})", route=route)
    return TransientError(f"connection failed after sending ({name})", route=route)
