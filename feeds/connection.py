"""One market-data WebSocket and the loop that keeps it connected.

A single loop per connection owns reconnection: it builds a fresh ``WebSocketApp`` for
every attempt with the session's current tokens, runs it with ``reconnect=0`` and, when it
ends, decides how long to wait. The socket callbacks only record what happened, decode
ticks and hand them to the writer; they never sleep, send more than the subscription
replay, or reconnect. Liveness checks (text ping, data watchdog, quiet instruments) are
driven from the worker's control loop through ``heartbeat`` and ``watchdog``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import cast

import websocket
from websocket import ABNF, WebSocketBadStatusException

from broker.codec import (
    FrameError,
    LtpTick,
    QuoteTick,
    ServerError,
    SnapQuoteTick,
    decode,
    parse_text,
)
from feeds.backoff import Backoff
from feeds.clock import Clock
from feeds.config import FeedConfig
from feeds.credentials import CredentialSource, CredentialsUnavailable, FeedCredentials
from feeds.fastread import FastWebSocketApp
from feeds.registry import (
    ACTION_SUBSCRIBE,
    ACTION_UNSUBSCRIBE,
    Key,
    SubscriptionRegistry,
    group,
    requests,
)
from feeds.writer import TickEntry
from tradebot.state import record

log = logging.getLogger(__name__)

CONNECTING = "CONNECTING"
CONNECTED = "CONNECTED"
DOWN = "DOWN"
MARKET_CLOSED = "MARKET_CLOSED"
STOPPED = "STOPPED"

_OPCODE_BINARY = ABNF.OPCODE_BINARY
_OPCODE_TEXT = ABNF.OPCODE_TEXT


class _Attempt:
    """What one connection attempt did, filled in by that attempt's callbacks."""

    __slots__ = ("opened_at", "closed_at", "error", "status", "refused_reason", "close_code",
                 "forced", "ticks")

    def __init__(self) -> None:
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.error: BaseException | None = None
        self.status: int | None = None
        self.refused_reason = ""
        self.close_code: int | None = None
        self.forced = ""
        self.ticks = 0

    def describe(self) -> str:
        if self.forced:
            return self.forced
        if self.status is not None:
            return f"handshake refused: HTTP {self.status} {self.refused_reason}".strip()
        if self.error is not None:
            text = str(self.error) or self.error.__class__.__name__
            return f"{self.error.__class__.__name__}: {text}"[:200]
        if self.close_code is not None:
            return f"closed by the server (code {self.close_code})"
        return "connection closed"


class _RateLimitedLog:
    """The first occurrence at once, then one summary line per ``every`` seconds."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.count = 0
        self._pending = 0
        self._next = 0.0

    def hit(self, message: str, *args) -> None:
        self.count += 1
        self._pending += 1
        now = time.monotonic()
        if now >= self._next:
            log.warning(message + " (%d in the last %.0f s)", *args, self._pending, self.every)
            self._pending = 0
            self._next = now + self.every


class RefreshGate:
    """At most one session refresh per ``interval`` for all the connections sharing it.

    A refusal that comes right after a refresh is not about the tokens (they are new), so
    the other connections of the feed back off instead of asking for a refresh of their
    own. Across processes the session itself makes sure a stale token is replaced once.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = float("-inf")
        self._lock = threading.Lock()

    def claim(self, now: float) -> bool:
        """True when the caller may refresh now (and the next one must wait)."""
        with self._lock:
            if now - self._last < self.interval:
                return False
            self._last = now
            return True


class FeedConnection:
    def __init__(
        self,
        index: int,
        config: FeedConfig,
        credentials: CredentialSource,
        put: Callable[[TickEntry], None],
        clock: Clock | None = None,
        market_open: Callable[[], bool] = lambda: True,
        backoff: Backoff | None = None,
        refresh_gate: RefreshGate | None = None,
    ) -> None:
        self.index = index
        self.name = f"connection {index + 1}"
        self.config = config
        self.registry = SubscriptionRegistry()
        self.backoff = backoff or Backoff(config.backoff)
        self._credentials = credentials
        self._put = put
        self._clock = clock or Clock()
        self._market_open = market_open
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._app: websocket.WebSocketApp | None = None
        self._attempt: _Attempt | None = None
        self._refresh_gate = refresh_gate or RefreshGate(config.auth_refresh_interval)
        self._creds: FeedCredentials | None = None  # the tokens of the latest attempt
        self._reset_requested = False
        self._wanted: set[Key] = set()
        self._seen: dict[Key, float] = {}  # last tick per instrument (monotonic)
        self._since: dict[Key, float] = {}  # when each was (re)subscribed on this socket
        self._seq: dict[Key, int] = {}
        self._bad_frames = _RateLimitedLog()
        self._server_errors = _RateLimitedLog()
        self._handler_errors = _RateLimitedLog()
        self.state = CONNECTING
        self.connected_since: float | None = None  # epoch seconds
        self.connected_at = 0.0  # monotonic
        self.last_tick_at = 0.0  # monotonic
        self.last_rx_ms = 0  # epoch ms of the last tick received
        self.last_error = ""
        self.opens = 0
        self.reconnects = 0  # opens after a drop; the first of the day is not one
        self._first_open = True
        self.attempts_total = 0
        self.ticks = 0
        self.gaps = 0
        self._ping_sent_at = 0.0
        self._pong_at = 0.0

    # --- lifecycle (worker thread) -------------------------------------------------

    def start(self) -> FeedConnection:
        self._thread = threading.Thread(
            target=self._run, name=f"feed-conn-{self.index + 1}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        self.force_reconnect("feed stopping", log_it=False)
        if self._thread:
            self._thread.join(timeout)

    @property
    def bad_frames(self) -> int:
        return self._bad_frames.count

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def force_reconnect(self, reason: str, reset_backoff: bool = False, log_it=True) -> bool:
        """Close the current socket so the loop reconnects; False if none was open."""
        with self._lock:
            app, attempt = self._app, self._attempt
            if reset_backoff:
                self._reset_requested = True
            if app is None or attempt is None:
                self._wake.set()  # waiting between attempts: try again now
                return False
            attempt.forced = reason
        if log_it:
            log.warning("Closing %s: %s", self.name, reason)
        _abort(app)
        return True

    # --- subscriptions -------------------------------------------------------------

    def subscribe(self, mode: int, keys: Iterable[Key]) -> list[Key]:
        added = self.registry.subscribe(mode, keys)
        if added:
            now = time.monotonic()
            with self._lock:
                self._wanted.update(added)
                for key in added:
                    self._since[key] = now
            self._send(requests(ACTION_SUBSCRIBE, mode, group(added)))
        return added

    def unsubscribe(self, keys: Iterable[Key]) -> list[Key]:
        removed = self.registry.unsubscribe(keys)
        gone: list[Key] = []
        for mode, mode_keys in removed.items():
            with self._lock:
                self._wanted.difference_update(mode_keys)
                for key in mode_keys:
                    self._seen.pop(key, None)
                    self._since.pop(key, None)
                    self._seq.pop(key, None)
            self._send(requests(ACTION_UNSUBSCRIBE, mode, group(mode_keys)))
            gone.extend(mode_keys)
        return gone

    def resubscribe(self, keys: Iterable[Key] | None = None) -> int:
        """Send unsubscribe + subscribe again for these instruments (all when None)."""
        wanted = set(keys) if keys is not None else self.registry.keys()
        now = time.monotonic()
        count = 0
        for mode, by_ex in self.registry.snapshot().items():
            chosen = [(ex, t) for ex, tokens in by_ex.items() for t in tokens if (ex, t) in wanted]
            if not chosen:
                continue
            self._send(requests(ACTION_UNSUBSCRIBE, mode, group(chosen)))
            self._send(requests(ACTION_SUBSCRIBE, mode, group(chosen)))
            for key in chosen:
                self._since[key] = now
            count += len(chosen)
        return count

    def _send(self, frames: list[str]) -> None:
        app = self._app
        if app is None or self.state != CONNECTED:
            return  # the next open replays the registry
        try:
            for frame in frames:
                app.send(frame)
        except Exception as exc:  # closing under us; the replay on the next open covers it
            log.debug("%s: send failed (%s); the next open replays the set", self.name, exc)

    def flowing(self, now: float) -> int:
        """Instruments with a tick within the quiet window (the ones not being chased)."""
        window = self.config.quiet_seconds
        with self._lock:
            return sum(1 for key in self._wanted if now - self._seen.get(key, -1e18) <= window)

    # --- the reconnect loop --------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if not self._market_open():
                        self._market_closed()
                        continue
                    attempt = self._connect_once()
                    if self._stop.is_set():
                        break
                    self._after(attempt)
                except Exception:  # a bug must cost one attempt, never the connection loop
                    log.exception("%s: reconnect loop step failed; retrying in 1 s", self.name)
                    self._clock.wait(self._stop, 1.0)
        finally:
            self.state = STOPPED

    def _market_closed(self) -> None:
        if self.state != MARKET_CLOSED:
            log.info("%s: market closed; not connecting until it opens", self.name)
            self.state = MARKET_CLOSED
            self.backoff.reset()
            self._first_open = True
        self._clock.wait(self._wake, 1.0)
        self._wake.clear()

    def _connect_once(self) -> _Attempt:
        attempt = _Attempt()
        self.attempts_total += 1
        if self.state != DOWN:
            self.state = CONNECTING
        try:
            creds = self._credentials.current()
        except CredentialsUnavailable as exc:
            attempt.error = exc
            return attempt
        self._creds = creds
        app = FastWebSocketApp(
            self.config.url,
            header=creds.headers(),
            on_open=lambda ws: self._on_open(ws, attempt),
            on_data=lambda ws, data, opcode, fin: self._on_data(data, opcode, attempt),
            on_error=lambda ws, exc: self._on_error(exc, attempt),
            on_close=lambda ws, code, reason: self._on_close(code, attempt),
        )
        with self._lock:
            if self._stop.is_set():
                return attempt
            self._app, self._attempt = app, attempt
        try:
            app.run_forever(
                ping_interval=self.config.ws_ping_interval,
                ping_timeout=self.config.ws_ping_timeout,
                skip_utf8_validation=True,
                reconnect=0,
            )
        except Exception as exc:  # run_forever reports through on_error; this is a backstop
            attempt.error = attempt.error or exc
        finally:
            with self._lock:
                self._app = self._attempt = None
            attempt.closed_at = self._clock.monotonic()
        return attempt

    def _after(self, attempt: _Attempt) -> None:
        """Decide what follows a finished attempt: refresh tokens, wait, or nothing."""
        lasted: float | None = None  # how long the socket stayed open, when it opened
        if attempt.opened_at is not None:
            lasted = (attempt.closed_at or 0.0) - attempt.opened_at
            self.backoff.connection_lasted(lasted, attempt.ticks > 0)
        with self._lock:
            if self._reset_requested:
                self.backoff.reset()
            self._reset_requested = False
        if not self._market_open():
            return  # closing for the night is not a failure
        reason = attempt.describe()
        self.last_error = reason
        if lasted is not None:
            log.warning("%s lost after %.1f s: %s", self.name, lasted, reason)
        refreshed = attempt.status in (401, 403) and self._refresh_tokens(reason)

        delay = self.backoff.next_delay()
        if refreshed:
            delay = min(delay, self.backoff.policy.first_max)
        attempt_no, fast = self.backoff.attempt, self.backoff.policy.fast_attempts
        if attempt_no <= fast:
            log.warning(
                "WebSocket connection attempt %d/%d, retrying in %s s (%s: %s)",
                attempt_no, fast, _seconds(delay), self.name, reason,
            )
        else:
            log.warning(
                "WebSocket connection attempt %d (feed DOWN), retrying in %s s (%s: %s)",
                attempt_no, _seconds(delay), self.name, reason,
            )
        # No socket while waiting: never CONNECTED here, or the watchdog would cut the wait
        # short. A connection that opened but never got healthy goes DOWN again at once.
        if attempt_no < fast:
            self.state = CONNECTING
        elif self.state != DOWN:
            self.state = DOWN
            record(
                "feed",
                f"market feed DOWN: {attempt_no} connection attempts failed on {self.name} "
                f"({reason}); retrying every {self.backoff.policy.cap:.0f} s",
                level="error",
                connection=self.index + 1,
            )
        self._clock.wait(self._wake, delay)
        self._wake.clear()

    def _refresh_tokens(self, reason: str) -> bool:
        if not self._refresh_gate.claim(self._clock.monotonic()):
            return False  # refreshed moments ago: the refusal is not about our tokens
        log.warning("%s: %s; refreshing the session before reconnecting", self.name, reason)
        try:
            self._credentials.refresh(self._creds)
        except CredentialsUnavailable as exc:
            log.warning("%s: session refresh failed (%s); backing off", self.name, exc)
            return False
        return True

    # --- socket callbacks (reader thread: no sleeping, no reconnecting) --------------

    def _on_open(self, ws: websocket.WebSocketApp, attempt: _Attempt) -> None:
        # Always the FastWebSocketApp of _connect_once; swap reads before the first frame.
        cast(FastWebSocketApp, ws).install_reader()
        attempt.opened_at = self._clock.monotonic()
        now = time.monotonic()  # liveness runs on the same clock as the tick stamps
        was_down = self.state == DOWN
        failures = self.backoff.attempt
        self.connected_at = self._ping_sent_at = self._pong_at = now
        self.connected_since = self._clock.time()
        self.opens += 1
        if not self._first_open:
            self.reconnects += 1
        self._first_open = False
        # CONNECTED before the snapshot: a subscribe racing with this open is either in
        # the snapshot or sent live by subscribe() itself (a duplicate is ignored).
        self.state = CONNECTED
        frames = self.registry.replay_requests()
        keys = self.registry.keys()
        with self._lock:
            self._wanted = keys
            self._since = dict.fromkeys(keys, now)
            self._seq.clear()
        for frame in frames:
            ws.send(frame)
        log.info(
            "%s open (%s); replayed %d subscriptions in %d requests",
            self.name, "reconnect" if self.opens > 1 else "first connect", len(keys), len(frames),
        )
        if was_down:
            record(
                "feed",
                f"market feed recovered on {self.name} after {failures} failed attempts",
                level="warning",
                connection=self.index + 1,
            )

    def _on_data(self, data: bytes, opcode: int, attempt: _Attempt) -> None:
        try:
            if opcode == _OPCODE_BINARY:
                self._on_tick(data, attempt)
            elif opcode == _OPCODE_TEXT:
                self._on_text(data)
        except Exception as exc:  # a bug here must not cost the connection
            self._handler_errors.hit("%s: tick handler failed: %r", self.name, exc)

    def _on_tick(self, data: bytes, attempt: _Attempt) -> None:
        try:
            tick = decode(data)
        except FrameError as exc:
            self._bad_frames.hit("%s: skipped a bad frame: %s", self.name, exc)
            return
        key = (tick[1], tick[2])
        if key not in self._wanted:
            return  # late packet for an instrument just unsubscribed
        now = time.monotonic()
        self.last_tick_at = now
        self._seen[key] = now
        self.ticks += 1
        attempt.ticks += 1
        mode = tick[0]
        if mode == 4:
            return  # Depth-20 carries no price or sequence for the tick stream
        seq = tick[3]
        last = self._seq.get(key)
        if last is not None and seq > last + 1:
            self.gaps += seq - last - 1
        self._seq[key] = seq
        rx = self.last_rx_ms = int(time.time() * 1000)
        if mode == 1:
            ltp = cast(LtpTick, tick)
            self._put(TickEntry(key[0], key[1], ltp[5], ltp[4], seq, None, None, rx))
        else:
            quote = cast("QuoteTick | SnapQuoteTick", tick)  # modes 2 and 3 share the head
            self._put(TickEntry(key[0], key[1], quote[5], quote[4], seq, quote[8], quote[6], rx))

    def _on_text(self, data: bytes | str) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        try:
            message = parse_text(text)
        except FrameError as exc:
            self._bad_frames.hit("%s: skipped a text frame: %s", self.name, exc)
            return
        if message == "pong":
            self._pong_at = time.monotonic()
        elif isinstance(message, ServerError):
            self.last_error = f"{message.code} {message.message}"
            self._server_errors.hit(
                "%s: server error %s %s (request %s)",
                self.name, message.code, message.message, message.correlation_id,
            )

    def _on_error(self, exc: BaseException, attempt: _Attempt) -> None:
        if attempt.error is None:
            attempt.error = exc
        if isinstance(exc, WebSocketBadStatusException):
            attempt.status = exc.status_code
            headers = exc.resp_headers or {}
            attempt.refused_reason = str(headers.get("x-error-message", ""))[:100]

    def _on_close(self, code: int | None, attempt: _Attempt) -> None:
        attempt.close_code = code

    # --- liveness (control thread) -------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Send the text ping when due; close the socket if the last one got no pong.

        ``now`` is ``time.monotonic()``: ticks and pongs are stamped with it on the
        reader thread, where an injectable clock would cost time on every tick."""
        app = self._app
        if app is None or self.state != CONNECTED:
            return
        waited = now - self._ping_sent_at
        if self._ping_sent_at > self._pong_at and waited > self.config.pong_timeout:
            self.force_reconnect(f"no pong {waited:.1f} s after ping")
            return
        if waited >= self.config.ping_interval:
            self._ping_sent_at = now
            try:
                app.send("ping")
            except Exception:  # closing under us; the loop is already on it
                pass

    def watchdog(self, now: float) -> None:
        """During market hours: reconnect a silent socket, resubscribe quiet instruments.
        ``now`` is ``time.monotonic()``, as for ``heartbeat``."""
        if self.state != CONNECTED or not self._wanted:
            return
        silent = now - max(self.last_tick_at, self.connected_at)
        if silent > self.config.watchdog_seconds:
            self.force_reconnect(f"feed watchdog: no tick for {silent:.1f} s")
            return
        quiet_for = self.config.quiet_seconds
        with self._lock:
            quiet = [
                key
                for key in self._wanted
                if now - max(self._seen.get(key, -1e18), self._since.get(key, now)) > quiet_for
            ]
            total = len(self._wanted)
        if quiet and len(quiet) < total:
            log.warning(
                "%s: %d of %d instruments quiet for %.0f s while others flow; resubscribing %s",
                self.name, len(quiet), total, quiet_for,
                ", ".join(token for _, token in sorted(quiet)[:10]),
            )
            self.resubscribe(quiet)


def _seconds(value: float) -> str:
    """2.0 for two seconds, 0.04 for forty milliseconds."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _abort(app: websocket.WebSocketApp) -> None:
    """End run_forever now: shut the socket down instead of a polite close handshake,
    which would wait for a peer that may be gone."""
    app.keep_running = False
    ws = app.sock
    raw = getattr(ws, "sock", None) if ws is not None else None
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
