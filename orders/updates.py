"""The order-update WebSocket: order states and fills as they happen (smartapi.md §3.7).

``manage.py run_order_updates`` keeps one connection to ANGEL_ORDER_WS_URL (Bearer JWT of
the shared session) and applies every event to the database: a known order is updated
(``orders.book.apply_row``), and an order with our tag that the database does not hold
yet is adopted into its intent when that intent's outcome is unknown. It is a fast path
only: the reconciler reads the order book every 60 s whatever happens here.

The connection is re-made with capped, jittered backoff; a 401 refreshes the session
first; silence is caught by WebSocket pings (10 s, 5 s timeout).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time

import websocket
from django.conf import settings
from django.db import close_old_connections

from orders import book, placement, states, tags
from orders.gateway import gateway
from orders.models import Order, OrderIntent, Status

log = logging.getLogger(__name__)

PING_INTERVAL = 10
PING_TIMEOUT = 5
MAX_BACKOFF = 30.0


def handle_message(text: str) -> str:
    """Apply one order-update frame; returns what it did, in a word."""
    try:
        message = json.loads(text)
    except ValueError:
        return "ignored"
    if not isinstance(message, dict) or message.get("order-status") == "AB00":
        return "ignored"  # the greeting on connect, or not an order event
    row = message.get("orderData")
    if not isinstance(row, dict):
        return "ignored"
    return handle_row(row)


def handle_row(row: dict) -> str:
    orderid = book.text(row.get("orderid"))
    if not orderid:
        return "ignored"
    order = Order.objects.select_related("intent").filter(broker_order_id=orderid).first()
    if order is not None:
        return "updated" if book.apply_row(order, row) else "unchanged"
    tag = book.text(row.get("ordertag")).upper()
    if not tags.is_ours(tag):
        return "ignored"
    intent = OrderIntent.objects.filter(ordertag=tag).select_related("instrument").first()
    if intent is None or intent.status not in (Status.UNKNOWN, Status.EXPIRED):
        # A live holder records its own answer; tags the database does not know are for
        # the reconciler, which adopts and reports them.
        return "later"
    result = placement.adopt(intent, None, [row])
    if result == "adopted":
        states.remark(intent, "found through the order-update stream")
    return result


class OrderUpdateListener:
    """Runs the connection loop until ``stop()``; thread-safe to stop from elsewhere."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or settings.ANGEL_ORDER_WS_URL
        self._stop = threading.Event()
        self._app: websocket.WebSocketApp | None = None
        self.connected = threading.Event()
        self.events = 0
        self.connects = 0

    def stop(self) -> None:
        self._stop.set()
        app = self._app
        if app is None:
            return
        app.keep_running = False
        raw = getattr(getattr(app, "sock", None), "sock", None)
        if raw is not None:
            try:  # wakes the reader's select() at once instead of at its next timeout
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        app.close()

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                jwt = gateway().session.current().jwt
            except Exception as exc:  # broker down or credentials wrong: say so, wait
                log.warning("order updates: no session (%s)", exc)
                jwt = None
            if jwt:
                opened_at = time.monotonic()
                self._connect(jwt)
                if time.monotonic() - opened_at > 30:
                    failures = 0  # it had been up a while: start the backoff again
            if self._stop.is_set():
                break
            failures += 1
            wait = min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
            log.warning("order updates: disconnected; reconnect %d in %.1fs", failures, wait)
            self._stop.wait(wait)

    def _connect(self, jwt: str) -> None:
        def on_open(ws) -> None:
            self.connects += 1
            self.connected.set()
            log.info("order updates: connected to %s", self.url)

        def on_message(ws, text) -> None:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            if text in ("pong", "ping"):
                return
            close_old_connections()
            try:
                if handle_message(text) in ("updated", "adopted"):
                    self.events += 1
            except Exception:  # one bad event must not stop the stream
                log.exception("order updates: event not applied")

        def on_error(ws, error) -> None:
            if "401" in str(error):
                log.warning("order updates: 401; refreshing the session")
                try:
                    gateway().session.invalidate(jwt)
                except Exception as exc:
                    log.warning("order updates: refresh failed (%s)", exc)
            else:
                log.warning("order updates: %s", error)

        def on_close(ws, code, reason) -> None:
            self.connected.clear()

        self._app = websocket.WebSocketApp(
            self.url,
            header=[f"Authorization: Bearer {jwt}"],
            on_open=on_open,
            on_message=on_message,
            on_error=on_error,
            on_close=on_close,
        )
        self._app.run_forever(
            ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, skip_utf8_validation=True
        )
        self._app = None
