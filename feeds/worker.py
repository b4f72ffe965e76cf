"""The feed worker behind ``manage.py run_feed``: connections, control loop, feed state.

Threads: one per connection (its reconnect loop and socket reader), one Redis writer, and
the control loop on the caller's thread. The control loop does everything periodic:
text pings, the data watchdog, commands from Redis, the feed state hash, slot leases,
watchlist changes and market open/close. It never blocks for long: every Redis call it
makes has a one-second timeout and a failure only skips that step until the next pass.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import cast

import redis
import websocket
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from feeds.clock import Clock
from feeds.config import FeedConfig
from feeds.connection import CONNECTED, DOWN, MARKET_CLOSED, FeedConnection, RefreshGate
from feeds.control import COMMANDS
from feeds.credentials import CredentialSource
from feeds.registry import MAX_TOKENS_PER_CONNECTION, Key
from feeds.slots import SlotLeases
from feeds.writer import TickWriter
from tradebot import keys
from tradebot.market_hours import is_market_open, next_open, now_ist
from tradebot.state import record

log = logging.getLogger(__name__)

_Entry = tuple[str, dict[str, str]]  # a stream entry: (id, fields)


def redis_client(timeout: float = 1.0, url: str | None = None) -> redis.Redis:
    """A client that fails fast: the feed decides itself when to try again."""
    return redis.Redis.from_url(
        url or settings.REDIS_URL,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def load_watchlist() -> set[Key]:
    """(exchange type, token) of every active instrument on the watchlist."""
    from feeds.models import Instrument

    rows = Instrument.objects.filter(on_watchlist=True, active=True)
    return {(ex, token) for ex, token in rows.values_list("exchange_type", "token")}


class _Every:
    """True once per ``seconds`` (monotonic), for the periodic steps of the loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = float("-inf")

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.seconds
        return True


class FeedWorker:
    def __init__(
        self,
        config: FeedConfig,
        credentials: CredentialSource,
        *,
        connections: int = 1,
        client_code: str | None = None,
        clock: Clock | None = None,
        now: Callable[[], datetime] = now_ist,
        always_open: bool | None = None,
        watchlist: Callable[[], set[Key]] = load_watchlist,
        writer: TickWriter | None = None,
        control_redis: Callable[[], redis.Redis] = redis_client,
        watchlist_poll_seconds: float | None = None,
        stop_on_kill_switch: bool | None = None,
        loop_interval: float = 0.1,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.wanted_connections = max(1, min(connections, 3))
        self.client_code = client_code or settings.ANGEL_CLIENT_CODE or ""
        self.clock = clock or Clock()
        self._now = now
        self.always_open = (
            settings.MARKET_ALWAYS_OPEN if always_open is None else always_open
        )
        self._load_watchlist = watchlist
        self.writer = writer or TickWriter(
            lambda: redis_client(timeout=2.0),
            maxlen=getattr(settings, "FEED_STREAM_MAXLEN", 500_000),
            buffer_max=getattr(settings, "FEED_BUFFER_MAX", 200_000),
            on_outage=self._redis_outage,
        )
        self._redis = control_redis()
        self.slots = SlotLeases(self._redis, self.client_code)
        self.connections: list[FeedConnection] = []
        self._refresh_gate = RefreshGate(config.auth_refresh_interval)  # one for all sockets
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self.loop_interval = loop_interval
        self.watchlist: set[Key] = set()
        self._commands_from: str | None = None
        self._control_down_since: float | None = None
        self._market_open_now: bool | None = None
        self._day: date | None = None
        self._reconnects_before_today = 0
        self._retired_reconnects = 0  # reconnects of connections closed for a lost slot
        poll = watchlist_poll_seconds or float(
            getattr(settings, "FEED_WATCHLIST_POLL_SECONDS", 30)
        )
        self._every_watchlist = _Every(poll)
        self._every_state = _Every(1.0)
        self._every_commands = _Every(0.2)
        self._every_watchdog = _Every(0.5)
        self._every_slots = _Every(5.0)
        self._every_kill = _Every(2.0)
        if stop_on_kill_switch is None:
            stop_on_kill_switch = getattr(settings, "FEED_STOP_ON_KILL_SWITCH", False)
        self.stop_on_kill_switch = stop_on_kill_switch
        self.state = "STARTING"

    # --- public --------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
            log.info("Feed stop requested: %s", reason)
        self.stop_event.set()

    def market_open(self) -> bool:
        return is_market_open(self._now(), always_open=self.always_open)

    def run(self) -> None:
        """Run until a stop is requested (SIGTERM, the stop command, the kill switch)."""
        websocket.setdefaulttimeout(self.config.connect_timeout)
        # The socket reader drains bursts of frames without a syscall in between; a
        # short GIL switch interval lets the writer thread in every half millisecond
        # instead of every five, which is most of the tick-to-XADD latency otherwise.
        sys.setswitchinterval(getattr(settings, "FEED_SWITCH_INTERVAL", 0.0005))
        self._control(self._publish_state)
        self.writer.start()
        try:
            if not self._acquire_first_slots():
                return
            self._start()
            while not self.stop_event.is_set():
                try:
                    self._step()
                except Exception:  # a bug in one step must not take the feed down
                    log.exception("Feed control step failed; continuing")
                    self.stop_event.wait(1.0)
                self.stop_event.wait(self.loop_interval)
        finally:
            self._shutdown()

    # --- start and stop ------------------------------------------------------------

    def _acquire_first_slots(self) -> bool:
        attempt = 0
        while not self.stop_event.is_set():
            try:
                held = self.slots.acquire(self.wanted_connections)
            except redis.RedisError as exc:
                held, reason = [], f"Redis unreachable ({exc.__class__.__name__})"
            else:
                reason = f"all {self.slots.max_slots} connection slots of "
                reason += f"{self.client_code} are taken by other feed processes"
            if held:
                return True
            attempt += 1
            self.state = DOWN
            log.warning("Feed cannot start (attempt %d): %s; retrying in 5.0 s", attempt, reason)
            self._control(functools.partial(self._publish_state, last_error=reason))
            self.stop_event.wait(5.0)
        return False

    def _start(self) -> None:
        self._market_open_now = self.market_open()
        for slot in self.slots.held:
            self._add_connection(slot)
        try:
            self._apply_watchlist(self._load_watchlist())
        except Exception as exc:  # database trouble: start empty, the poll retries
            log.error("Watchlist could not be loaded (%s); retrying on the next check", exc)
        log.info(
            "Feed starting: %d instruments, mode %d, %d connection(s) on slot(s) %s of %d, "
            "watchdog %.0f s, market %s",
            len(self.watchlist), self.config.mode, len(self.connections),
            ",".join(str(s + 1) for s in self.slots.held), self.slots.max_slots,
            self.config.watchdog_seconds, "open" if self._market_open_now else "closed",
        )
        for connection in self.connections:
            connection.start()

    def _add_connection(self, slot: int) -> FeedConnection:
        connection = FeedConnection(
            slot, self.config, self.credentials, self.writer.put,
            clock=self.clock, market_open=self.market_open, refresh_gate=self._refresh_gate,
        )
        self.connections.append(connection)
        return connection

    def _shutdown(self) -> None:
        deadline = self.clock.monotonic() + 3.0
        for connection in self.connections:
            connection._stop.set()
            connection.force_reconnect("feed stopping", log_it=False)
        for connection in self.connections:
            connection.stop(timeout=max(0.1, deadline - self.clock.monotonic()))
        self.writer.stop(timeout=1.0)
        try:
            self.slots.release()
        except redis.RedisError:
            pass
        self.state = "STOPPED"
        self._control(self._publish_state)
        log.info("Feed stopped (%s); %d ticks written", self.stop_reason, self.writer.written)

    # --- the control loop ----------------------------------------------------------

    def _step(self) -> None:
        now = self.clock.monotonic()
        is_open = self.market_open()
        if is_open != self._market_open_now:
            self._market_changed(is_open)
        live_now = time.monotonic()  # the clock ticks are stamped with
        for connection in self.connections:
            connection.heartbeat(live_now)
        if is_open and self._every_watchdog.due(now):
            for connection in self.connections:
                connection.watchdog(live_now)
        if self._every_commands.due(now):
            self._control(self._poll_commands)
        if self._every_state.due(now):
            self._control(self._publish_state)
        if self._every_slots.due(now):
            self._control(self._renew_slots)
        if self._every_watchlist.due(now):
            self._check_watchlist()
        if self.stop_on_kill_switch and self._every_kill.due(now):
            self._check_kill_switch()

    def _control(self, step: Callable[[], object]) -> None:
        """Run a Redis step; when Redis is away say so once and try again next time."""
        try:
            step()
        except redis.RedisError as exc:
            if self._control_down_since is None:
                self._control_down_since = self.clock.monotonic()
                log.warning(
                    "Redis unreachable for feed state and commands (%s); the socket stays up "
                    "and this is retried every second", exc.__class__.__name__,
                )
            return
        if self._control_down_since is not None:
            log.info("Redis reachable again for feed state and commands")
            self._control_down_since = None

    def _market_changed(self, is_open: bool) -> None:
        self._market_open_now = is_open
        if is_open:
            log.info("Market open: feed connecting")
            for connection in self.connections:
                connection.force_reconnect("market open")  # wakes the idle loops
            return
        moment = next_open(self._now())
        log.info("Market closed: feed paused until %s IST", moment.strftime("%a %d %b %H:%M"))
        for connection in self.connections:
            connection.force_reconnect("market closed", log_it=False)

    def _check_kill_switch(self) -> None:
        from tradebot.state import is_kill_switch_engaged

        try:
            engaged = is_kill_switch_engaged()
        except Exception:  # Redis and the database both unreachable: keep streaming
            return
        if engaged:
            record("feed", "kill switch engaged: stopping the market feed", level="warning")
            self.request_stop("kill switch")

    # --- commands ------------------------------------------------------------------

    def _poll_commands(self) -> None:
        # A decode_responses client on RESP2: replies are lists of str ids and str fields.
        if self._commands_from is None:
            newest = cast(
                "list[_Entry] | None", self._redis.xrevrange(keys.FEED_COMMANDS, count=1)
            )
            self._commands_from = newest[0][0] if newest else "0-0"
        replies = cast(
            "list[tuple[str, list[_Entry]]] | None",
            self._redis.xread({keys.FEED_COMMANDS: self._commands_from}, count=20),
        )
        for _stream, entries in replies or ():
            for entry_id, fields in entries:
                self._commands_from = entry_id
                self.handle_command(fields.get("cmd", ""), fields.get("by", "unknown"))

    def handle_command(self, cmd: str, by: str = "unknown") -> None:
        if cmd not in COMMANDS:
            log.warning("Ignoring unknown feed command %r from %s", cmd, by)
            return
        record("feed", f"command {cmd} from {by}")
        if cmd == "reconnect":
            for connection in self.connections:
                connection.force_reconnect(f"reconnect command from {by}", reset_backoff=True)
        elif cmd == "resubscribe":
            count = sum(connection.resubscribe() for connection in self.connections)
            log.info("Resubscribed %d instruments on command from %s", count, by)
        elif cmd == "stop":
            self.request_stop(f"stop command from {by}")
        else:
            self._check_watchlist(force=True)

    # --- watchlist and sharding ----------------------------------------------------

    def _check_watchlist(self, force: bool = False) -> None:
        try:
            wanted = self._load_watchlist()
        except Exception as exc:  # database locked or gone; the running set stays
            log.warning("Watchlist check failed (%s); keeping %d instruments", exc,
                        len(self.watchlist))
            return
        if force or wanted != self.watchlist:
            self._apply_watchlist(wanted)

    def _apply_watchlist(self, wanted: set[Key]) -> None:
        added = sorted(wanted - self.watchlist)
        removed = self.watchlist - wanted
        for connection in self.connections:
            connection.unsubscribe(removed)
        placed = self._place(added)
        self.watchlist = (self.watchlist - removed) | set(placed)
        if added or removed:
            log.info(
                "Watchlist: %d added, %d removed; %d instruments on %d connection(s)",
                len(placed), len(removed), len(self.watchlist), len(self.connections),
            )

    def _place(self, added: Iterable[Key]) -> list[Key]:
        """Shard new instruments onto the least-loaded connections, 1000 at most each."""
        shares: dict[int, list[Key]] = {}
        loads = [len(c.registry) for c in self.connections]
        placed: list[Key] = []
        for key in added:
            if not loads:
                break
            index = min(range(len(loads)), key=loads.__getitem__)
            if loads[index] >= MAX_TOKENS_PER_CONNECTION:
                log.error("No connection has room for %s; %d tokens per connection at most",
                          key, MAX_TOKENS_PER_CONNECTION)
                continue
            loads[index] += 1
            shares.setdefault(index, []).append(key)
            placed.append(key)
        for index, share in shares.items():
            self.connections[index].subscribe(self.config.mode, share)
        return placed

    # --- slots ---------------------------------------------------------------------

    def _renew_slots(self) -> None:
        lost = self.slots.renew()
        for slot in lost:
            connection = next(c for c in self.connections if c.index == slot)
            record("feed", f"connection slot {slot + 1} taken by another process; closing "
                   f"{connection.name}", level="error")
            connection.stop(timeout=1.0)
            self.connections.remove(connection)
            self._retired_reconnects += connection.reconnects  # today's count keeps them
            self.watchlist -= connection.registry.keys()
        gained = []
        if len(self.slots.held) < self.wanted_connections:  # a slot may have come free
            before = set(self.slots.held)
            gained = sorted(set(self.slots.acquire(self.wanted_connections)) - before)
            for slot in gained:
                log.info("Took connection slot %d of %d", slot + 1, self.slots.max_slots)
                self._add_connection(slot).start()
        if lost or gained:
            self._apply_watchlist(self._load_watchlist())

    # --- state ---------------------------------------------------------------------

    def overall_state(self) -> str:
        if self.state in ("STOPPED", "STARTING") and not self.connections:
            return self.state
        if self.stop_event.is_set():
            return "STOPPED"
        if not self._market_open_now:
            return MARKET_CLOSED
        states = [c.state for c in self.connections]
        if states and all(s == CONNECTED for s in states):
            return CONNECTED if self.writer.redis_ok else "DEGRADED"
        if CONNECTED in states:
            return "DEGRADED"
        if DOWN in states or not states:
            return DOWN
        return "CONNECTING"

    def reconnects_today(self) -> int:
        total = self._retired_reconnects + sum(c.reconnects for c in self.connections)
        today = self._now().date()
        if self._day != today:
            if self._day is not None:
                self._reconnects_before_today = total
            self._day = today
        return total - self._reconnects_before_today

    def snapshot(self) -> dict[str, str | int | float]:
        now = time.monotonic()
        conns = self.connections
        since = [c.connected_since for c in conns if c.state == CONNECTED and c.connected_since]
        last_tick = max((c.last_rx_ms for c in conns), default=0) / 1000
        errors = [c.last_error for c in conns if c.last_error] + [self.writer.last_error]
        return {
            "state": self.overall_state(),
            "connected_since": round(min(since), 3) if since else "",
            "last_tick_at": round(last_tick, 3) if last_tick else "",
            "reconnects_today": self.reconnects_today(),
            "subscribed": sum(len(c.registry) for c in conns),
            "flowing": sum(c.flowing(now) for c in conns),
            "last_error": next((e for e in errors if e), ""),
            "updated_at": round(self.clock.time(), 3),
            "pid": os.getpid(),
            "gaps": sum(c.gaps for c in conns),
            "connections": len(conns),
            "ticks": sum(c.ticks for c in conns),
            "written": self.writer.written,
            "dropped": self.writer.dropped,
            "buffered": self.writer.buffered,
            "bad_frames": sum(c.bad_frames for c in conns),
        }

    def _publish_state(self, **extra: str) -> None:
        fields = self.snapshot()
        fields.update(extra)
        # redis-py's mapping has an invariant key type, which a dict[str, ...] cannot meet.
        self._redis.hset(keys.FEED_STATE, mapping=cast("dict[FieldT, EncodableT]", fields))

    def _redis_outage(self, kind: str, data: dict) -> None:
        if kind == "up":
            record("feed", f"Redis back after {data['down_seconds']} s; "
                   f"{data['dropped']} ticks dropped in all", level="warning")
