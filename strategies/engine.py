"""The strategy engine: ticks -> candles -> strategies -> risk gate -> order intents.

One process (``manage.py run_engine``), one main thread doing the work in small steps,
one background thread for broker calls (candle repairs, backfills, re-bootstraps), so a
slow ``getCandleData`` never delays the tick stream:

1. bootstrap history for the watchlist (progress bar, keys.BOOTSTRAP_STATE), prime the
   strategies with it;
2. join the tick streams' consumer group (replay the open candle, settle pending entries);
3. loop: read ticks -> one-minute candles (and larger ones) -> store -> ordered delivery
   (incomplete candles held for repair) -> strategies -> risk gate -> create_intent.

Every few seconds the loop also closes candles whose time is up, claims entries dead
consumers left, rereads the strategy configurations, retries warming-up symbols, writes
keys.ENGINE_STATE and squares off at the square-off time.
"""

from __future__ import annotations

import logging
import os
import queue
import signal as signals
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections
from redis.typing import EncodableT, FieldT

from strategies.base import Signal, Strategy, strategy_class
from strategies.bootstrap import (
    LOADED,
    Bootstrap,
    SymbolResult,
    trading_day_started,
)
from strategies.candles import (
    INTERVAL_MINUTES,
    MINUTE_MS,
    ONE_MINUTE,
    CandleBuilder,
    ClosedCandle,
    IntervalAggregator,
    bucket_start_ms,
    candle_from_row,
    from_ms,
    instrument_key,
)
from strategies.repair import DeliveryQueue, RepairRequest
from strategies.risk import RiskGate
from strategies.store import CandleStore
from strategies.ticks import TickReader, id_ms, id_tuple
from tradebot import keys
from tradebot.market_hours import IST
from tradebot.state import record

if TYPE_CHECKING:
    from strategies.models import StrategyConfig

log = logging.getLogger(__name__)

REPLAY_MARGIN_MS = 10_000  # ticks arrive about a second after their exchange time


def _setting(name: str, default):
    return getattr(settings, name, default)


@dataclass
class Runner:
    """One strategy configuration and its instance per instrument."""

    config: StrategyConfig
    instances: dict[str, Strategy] = field(default_factory=dict)
    version: str = ""

    @property
    def name(self) -> str:
        return self.config.name


def default_positions() -> Callable[[object], int]:
    """Position as the orders module sees it: filled plus still on the way when known."""
    try:
        from orders import positions
    except ImportError:
        log.warning("orders.positions missing: strategies see every position as flat")
        return lambda instrument: 0
    return getattr(positions, "exposure", None) or positions.net_quantity


def default_create_intent():
    from orders.intents import create_intent

    return create_intent


class HistoryWorker(threading.Thread):
    """Runs broker history calls off the main thread; answers go to ``results``."""

    def __init__(self, bootstrap: Bootstrap, instruments: dict, results: queue.Queue,
                 cap_at_close: bool) -> None:
        super().__init__(name="engine-history", daemon=True)
        self.bootstrap = bootstrap
        self.instruments = instruments
        self.results = results
        self.jobs: queue.Queue = queue.Queue()
        self.cap_at_close = cap_at_close
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                kind, payload = self.jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if kind == "repair":
                    self._repair(payload)
                elif kind == "history":
                    self.results.put(("history", self.bootstrap.load_symbol(payload)))
            except Exception as exc:  # one bad job must not stop repairs for good
                log.exception("history job %s failed", kind)
                if kind == "repair":
                    self.results.put(("repair", payload, None, f"{type(exc).__name__}: {exc}"))
            finally:
                close_old_connections()

    def _repair(self, request: RepairRequest) -> None:
        from broker.errors import BrokerError

        instrument = self.instruments[request.key]
        try:
            rows = self.bootstrap.fetch(
                instrument.exchange, instrument.token, request.interval,
                from_ms(request.from_ms), from_ms(request.to_ms),
            )
        except BrokerError as error:
            self.results.put(("repair", request, None, str(error)))
            return
        candles = [candle_from_row(request.key, request.interval, row,
                                   cap_at_close=self.cap_at_close) for row in rows or []]
        self.results.put(("repair", request, candles, ""))


class Engine:
    def __init__(
        self,
        *,
        redis_client=None,
        fetch=None,
        interval: str | None = None,
        consumer: str | None = None,
        create_intent=None,
        positions=None,
        risk: RiskGate | None = None,
        silence_ms: int | None = None,
        grace_ms: int | None = None,
        max_hold_ms: int | None = None,
        backfill_seconds: float | None = None,
        bootstrap_retries: int = 3,
        bootstrap_backoff: float = 0.5,
        progress: Callable[[int, int, SymbolResult], None] | None = None,
        on_signal: Callable[[ClosedCandle, Signal, object], None] | None = None,
    ) -> None:
        from broker.factory import get_redis

        self.redis = redis_client or get_redis()
        self.interval = interval or settings.CANDLE_INTERVAL
        self.always_open = bool(_setting("MARKET_ALWAYS_OPEN", False))
        self.silence_ms = silence_ms or int(float(_setting("CANDLE_SILENCE_SECONDS", 30)) * 1000)
        self.grace_ms = grace_ms or int(float(_setting("CANDLE_GRACE_SECONDS", 2)) * 1000)
        self.max_hold_ms = max_hold_ms or int(float(_setting("CANDLE_REPAIR_HOLD_SECONDS", 90))
                                              * 1000)
        self.backfill_seconds = backfill_seconds or float(_setting("BACKFILL_RETRY_SECONDS", 30))
        self.long_outage_ms = int(float(_setting("REBOOTSTRAP_AFTER_OUTAGE_SECONDS", 300)) * 1000)
        self.consumer = consumer
        self.progress = progress
        self.on_signal = on_signal
        self._create_intent = create_intent
        self._positions = positions
        self.risk = risk or RiskGate(self.redis)
        self.bootstrapper = Bootstrap(fetch, redis_client=self.redis, interval=self.interval,
                                      retries=bootstrap_retries, backoff=bootstrap_backoff)
        self.stopping = threading.Event()
        self.stats = {"ticks": 0, "bad_ticks": 0, "candles": 0, "signals": 0, "intents": 0,
                      "refused": 0, "repaired": 0, "dropped": 0, "replayed": 0}
        self.runners: dict[str, Runner] = {}
        self.warming: dict[str, float] = {}  # key -> next backfill attempt (monotonic)
        self._backfill_wait: dict[str, float] = {}
        self._history_in_flight: set[str] = set()
        self._last_ids: dict[str, tuple[int, int]] = {}
        self._squared_off: date | None = None
        self._bootstrapped_day: date | None = None
        self._config_checked = 0.0
        self._state_written = 0.0
        self._claimed_at = 0.0
        self._outage_seen: tuple | None = None

    # --- set-up -------------------------------------------------------------------------

    def load_instruments(self) -> None:
        from feeds.models import Instrument

        self.watchlist = list(Instrument.objects.filter(on_watchlist=True, active=True))
        self.instruments = {instrument_key(i.exchange_type, i.token): i
                            for i in Instrument.objects.filter(active=True)}
        self.streams = sorted({keys.TICKS_STREAM.format(exchange_type=i.exchange_type)
                               for i in self.watchlist} or {keys.TICKS_STREAM.format(
                                   exchange_type=1)})
        self.store = CandleStore(self.redis, self.instruments)
        self.results: queue.Queue = queue.Queue()
        self.worker = HistoryWorker(self.bootstrapper, self.instruments, self.results,
                                    cap_at_close=not self.always_open)
        self.builder = CandleBuilder(silence_ms=self.silence_ms, grace_ms=self.grace_ms,
                                     session_only=not self.always_open)
        self.minute_queue = DeliveryQueue(ONE_MINUTE, self._ask_repair,
                                          max_hold_ms=self.max_hold_ms)
        self.aggregators: dict[str, IntervalAggregator] = {}
        self.queues: dict[str, DeliveryQueue] = {ONE_MINUTE: self.minute_queue}
        extra = _setting("CANDLE_EXTRA_INTERVALS", ())
        if isinstance(extra, str):
            extra = [part.strip() for part in extra.split(",") if part.strip()]
        for interval in {self.interval, *extra} - {ONE_MINUTE}:
            if interval not in INTERVAL_MINUTES:
                raise ValueError(f"cannot build {interval} candles live; use one of "
                                 f"{', '.join(INTERVAL_MINUTES)}")
            self.aggregators[interval] = IntervalAggregator(
                interval, grace_ms=self.grace_ms, cap_at_close=not self.always_open)
            self.queues[interval] = DeliveryQueue(interval, self._ask_repair,
                                                  max_hold_ms=self.max_hold_ms)
        self.reader = TickReader(self.redis, self.streams, consumer=self.consumer)
        if self._create_intent is None:
            self._create_intent = default_create_intent()
        if self._positions is None:
            self._positions = default_positions()

    def _ask_repair(self, request: RepairRequest) -> None:
        self.worker.jobs.put(("repair", request))

    # --- bootstrap ----------------------------------------------------------------------

    def bootstrap(self) -> dict[str, SymbolResult]:
        self._write_state("BOOTSTRAPPING")
        started = time.monotonic()
        results = self.bootstrapper.run(self.watchlist, progress=self.progress)
        for result in results.values():
            self._apply_history(result, announce=False)
        loaded = sum(1 for r in results.values() if r.state == LOADED)
        record("engine", f"{self.bootstrapper.state.summary()} in "
               f"{time.monotonic() - started:.1f}s", level="info" if loaded == len(results)
               else "warning", loaded=loaded, total=len(results))
        self._bootstrapped_day = datetime.now(IST).date()
        return results

    def _apply_history(self, result: SymbolResult, announce: bool = True) -> None:
        """Store a symbol's history, mark it loaded or warming up, re-prime strategies."""
        key = result.key
        self._history_in_flight.discard(key)
        if result.state != LOADED:
            wait = self._backfill_wait.get(key, self.backfill_seconds)
            self.warming[key] = time.monotonic() + wait
            self._backfill_wait[key] = min(wait * 2, 300.0)
            if announce:
                self.bootstrapper.state.set(result)
            self.bootstrapper.state.schedule_backfill(result.instrument, wait)
            return
        self.store.save_history(result.candles)
        if result.candles:
            self.queues[self.interval].delivered_through(key, result.candles[-1].start_ms)
        was_warming = self.warming.pop(key, None) is not None
        self._backfill_wait.pop(key, None)
        if announce:
            self.bootstrapper.state.set(result)
        for runner in list(self.runners.values()):
            if key in runner.instances:
                try:
                    runner.instances[key] = self._primed(runner, key)
                except Exception as exc:  # raised on a historical candle: same as live
                    self._pause(runner, exc)
        if was_warming:
            record("engine", f"backfill merged {len(result.candles)} historical candles for "
                   f"{result.instrument.symbol}; {self.bootstrapper.state.summary()}",
                   symbol=result.instrument.symbol)

    def _primed(self, runner: Runner, key: str) -> Strategy:
        """A fresh instance fed the stored complete candles (history then live so far)."""
        cls = strategy_class(runner.config.kind)
        instance = cls(self.instruments[key], runner.config.params,
                       quantity=int(_setting("ORDER_QUANTITY", 1)))
        for candle in self.store.load(key, self.interval, cls.history_size):
            instance.feed(candle, 0)
        instance.live = True
        return instance

    # --- strategies ---------------------------------------------------------------------

    def load_strategies(self) -> None:
        """(Re)build runners whose configuration changed; drop disabled or paused ones."""
        from strategies.models import StrategyConfig

        self._config_checked = time.monotonic()
        seen = set()
        for config in StrategyConfig.objects.prefetch_related("instruments"):
            if not config.enabled or config.paused:
                continue
            seen.add(config.name)
            version = f"{config.updated_at.timestamp()}"
            current = self.runners.get(config.name)
            if current is not None and current.version == version:
                continue
            chosen = list(config.instruments.all()) or self.watchlist
            runner = Runner(config, version=version)
            try:
                for instrument in chosen:
                    key = instrument_key(instrument.exchange_type, instrument.token)
                    self.instruments.setdefault(key, instrument)
                    runner.instances[key] = self._primed(runner, key)
            except Exception as exc:
                self._pause(runner, exc)
                continue
            self.runners[config.name] = runner
            log.info("strategy %s (%s) on %d instruments", config.name, config.kind,
                     len(runner.instances))
        for name in set(self.runners) - seen:
            log.info("strategy %s stopped (disabled or paused)", name)
            del self.runners[name]

    def _pause(self, runner: Runner, exc: BaseException, candle: ClosedCandle | None = None):
        from strategies.models import StrategyConfig

        where = f" on {candle}" if candle else ""
        reason = f"{type(exc).__name__}: {exc}"[:400]
        StrategyConfig.objects.filter(pk=runner.config.pk).update(
            paused=True, paused_reason=f"{reason}{where}"[:500])
        self.runners.pop(runner.name, None)
        record("engine", f"strategy {runner.name} paused after an error: {reason}{where}",
               level="error", strategy=runner.name,
               traceback="".join(traceback.format_exception(exc))[-2000:])

    def dispatch(self, candle: ClosedCandle, now_ms: int) -> None:
        """One closed candle of the strategy interval to every strategy trading it."""
        # A candle from a backlog (engine was down) primes strategies but trades nothing.
        live = candle.end_ms >= now_ms - 2 * (candle.end_ms - candle.start_ms) - 10_000
        position = None
        for runner in list(self.runners.values()):
            instance = runner.instances.get(candle.key)
            if instance is None:
                continue
            if position is None:
                position = int(self._positions(instance.instrument))
            try:
                instance.live = live
                wanted = instance.feed(candle, position)
            except Exception as exc:
                self._pause(runner, exc, candle)
                continue
            if not live:
                continue
            for wish in wanted:
                self._act(runner.name, instance.instrument, candle, wish, position)

    def _act(self, name: str, instrument, candle: ClosedCandle, wish: Signal,
             position: int) -> None:
        self.stats["signals"] += 1
        price = self._price(instrument, candle)
        decision = self.risk.check(instrument, wish, position, price, strategy=name)
        if self.on_signal:
            self.on_signal(candle, wish, decision)
        if not decision.allowed:
            self.stats["refused"] += 1
            return
        intent = self._create_intent(
            instrument, wish.side, wish.quantity,
            order_type="LIMIT" if wish.price else "MARKET",
            price=None if wish.price is None else wish.price / 100,
            strategy=name, reason=wish.reason[:255], is_exit=decision.is_exit,
        )
        self.risk.note_order()
        self.stats["intents"] += 1
        record("engine", f"{name}: {wish.side} {wish.quantity} {instrument.symbol} "
               f"at ~{price / 100:.2f} ({wish.reason})", strategy=name,
               symbol=instrument.symbol, intent=getattr(intent, "pk", None))

    def _price(self, instrument, candle: ClosedCandle) -> int:
        try:
            ltp = self.redis.hget(keys.LAST_PRICE, candle.key)
        except Exception:
            ltp = None
        return int(float(ltp)) if ltp else candle.close

    def square_off(self, now: datetime) -> None:
        """At the square-off time, one exit per open position the strategies hold."""
        if not self.risk.square_off_due(now) or self._squared_off == now.date():
            return
        self._squared_off = now.date()
        traded = {key for runner in self.runners.values() for key in runner.instances}
        for key in traded:
            instrument = self.instruments[key]
            position = int(self._positions(instrument))
            if position == 0:
                continue
            wish = Signal("SELL" if position > 0 else "BUY", abs(position),
                          "square-off time", is_exit=True)
            price = self._price(instrument, ClosedCandle(key, self.interval, 0, 0, 0, 0, 0, 0, 0))
            last = ClosedCandle(key, self.interval, 0, 0, price, price, price, price, 0)
            self._act("square-off", instrument, last, wish, position)

    # --- ticks --------------------------------------------------------------------------

    def join_streams(self) -> None:
        """Create or find the group; rebuild the open candles from the stream; settle the
        pending entries (they are inside the replay)."""
        now_ms = int(time.time() * 1000)
        for stream in self.streams:
            lookback = bucket_start_ms(now_ms, self._largest_minutes()) - REPLAY_MARGIN_MS
            last = self.reader.ensure_group(stream, start_id=f"{lookback}-0")
            resume_ms = id_ms(last) if last and last != "0-0" else now_ms
            replay_from = bucket_start_ms(min(resume_ms, now_ms), self._largest_minutes())
            replay_from -= REPLAY_MARGIN_MS
            first = self.reader.first_id(stream)
            if first is not None and id_ms(first) > replay_from:
                # The stream starts later: before it nothing was recorded at all.
                covered = id_ms(first)
            else:
                covered = replay_from
            self.builder.watching_since(covered)
            upto = last if last and last != "0-0" else f"{lookback}-0"
            for batch in self.reader.replay(stream, f"{replay_from}-0", upto):
                self._consume(stream, batch)
                self.stats["replayed"] += len(batch)
            settled = self.reader.settle_pending(stream)
            if settled:
                log.info("settled %d pending tick entries on %s", settled, stream)

    def _largest_minutes(self) -> int:
        return max([1] + [a.minutes for a in self.aggregators.values()])

    def _consume(self, stream: str, entries) -> int:
        """Feed entries to the builder; returns how many were new. Entries not newer than
        the last one consumed from this stream are skipped (redelivery)."""
        add = self.builder.add
        fresh = 0
        bad = 0
        last = self._last_ids.get(stream, (0, 0))
        if entries and id_tuple(entries[0][0]) <= last:
            entries = [e for e in entries if id_tuple(e[0]) > last]
        for _entry_id, f in entries:
            fresh += 1
            try:
                vol = f.get("vol")
                add(f["ex"] + ":" + f["tk"], int(f["ts"]), int(f["ltp"]),
                    None if vol is None else int(vol), int(f.get("ltq") or 0),
                    int(f.get("seq") or 0))
            except (KeyError, ValueError, TypeError):
                bad += 1
        if entries:
            self._last_ids[stream] = id_tuple(entries[-1][0])
        self.stats["ticks"] += fresh - bad
        self.stats["bad_ticks"] += bad
        return fresh

    def step(self) -> int:
        """Read one batch of ticks and move everything along; returns ticks read."""
        count = 0
        for stream, entries in self.reader.read():
            count += self._consume(stream, entries)
            self.reader.ack(stream, [entry_id for entry_id, _ in entries])
        self.advance()
        return count

    def advance(self, now_ms: int | None = None) -> None:
        """Close due candles and deliver what is ready; take broker answers."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._take_results(now_ms)
        self.builder.close_due_ms(now_ms)
        closed = self.builder.take_closed()
        # Strategies first, then the database: a signal does not wait for the write.
        self.stats["candles"] += len(closed)
        for candle in closed:
            self.minute_queue.push(candle)
        self._flow(ONE_MINUTE, now_ms)
        for interval, aggregator in self.aggregators.items():
            aggregator.close_due_ms(now_ms, held=self.minute_queue.held_keys())
            bigger = aggregator.take_closed()
            closed.extend(bigger)
            for candle in bigger:
                self.queues[interval].push(candle)
            self._flow(interval, now_ms)
        if closed:
            self.store.save(closed)
        for delivery in self.queues.values():
            if delivery.repaired:
                self.stats["repaired"] += len(delivery.repaired)
                self.store.save(delivery.repaired)
                delivery.repaired = []

    def _flow(self, interval: str, now_ms: int) -> None:
        delivery = self.queues[interval]
        ready = delivery.take_ready(now_ms)
        if delivery.dropped:
            self._report_dropped(delivery.dropped)
            delivery.dropped = []
        for candle in ready:
            if interval == ONE_MINUTE:
                for aggregator in self.aggregators.values():
                    aggregator.add(candle)
            if interval == self.interval:
                self.dispatch(candle, now_ms)

    def _report_dropped(self, dropped: list[ClosedCandle]) -> None:
        """One activity line per batch: candles that could not be repaired in time."""
        self.stats["dropped"] += len(dropped)
        names = [getattr(self.instruments.get(c.key), "symbol", c.key) for c in dropped]
        first = dropped[0]
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        record("engine", f"{len(dropped)} incomplete {first.interval} candle(s) from "
               f"{first.start:%H:%M} held back, never shown to strategies: {shown}",
               level="warning", candles=[str(c) for c in dropped[:50]])

    def _take_results(self, now_ms: int) -> None:
        while True:
            try:
                item = self.results.get_nowait()
            except queue.Empty:
                return
            if item[0] == "repair":
                _, request, candles, error = item
                self.queues[request.interval].resolve(request, candles, now_ms, error)
                # Deliver at once: the held candle may be ready now.
            elif item[0] == "history":
                self._apply_history(item[1])

    # --- periodic -----------------------------------------------------------------------

    def housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._config_checked > 5:
            self.load_strategies()
        if now - self._claimed_at > 10:
            self._claimed_at = now
            for stream in self.reader.streams:
                claimed = self.reader.claim(stream)
                if claimed:
                    self._consume(stream, claimed)
                    self.reader.ack(stream, [entry_id for entry_id, _ in claimed])
        for key, due in list(self.warming.items()):
            if due <= now and key not in self._history_in_flight:
                self._history_in_flight.add(key)
                self.warming[key] = now + 3600  # rescheduled when the answer arrives
                self.worker.jobs.put(("history", self.instruments[key]))
        wall = datetime.now(IST)
        if trading_day_started(self._bootstrapped_day, wall) or self._long_outage():
            self._rebootstrap(wall)
        self.square_off(wall)
        if now - self._state_written > 2:
            self._write_state("RUNNING")

    def _long_outage(self) -> bool:
        gap = self.builder.last_gap()
        if gap is None or gap == self._outage_seen:
            return False
        self._outage_seen = gap
        since, until = gap
        return since != float("-inf") and until - since >= self.long_outage_ms

    def _rebootstrap(self, wall: datetime) -> None:
        self._bootstrapped_day = wall.date()
        record("engine", "reloading history for the watchlist (new trading day or long feed "
               "outage)")
        for instrument in self.watchlist:
            key = instrument_key(instrument.exchange_type, instrument.token)
            if key not in self._history_in_flight:
                self._history_in_flight.add(key)
                self.worker.jobs.put(("history", instrument))

    def _write_state(self, state: str) -> None:
        self._state_written = time.monotonic()
        held = sum(len(q.held_keys()) for q in self.queues.values())
        mapping: dict[FieldT, EncodableT] = {
            "state": state, "pid": os.getpid(), "updated_at": f"{time.time():.3f}",
            "interval": self.interval, "strategies": len(self.runners),
            "warming_up": len(self.warming), "held_candles": held,
            **{k: v for k, v in self.stats.items()},
            "late_ticks": self.builder.late, "duplicate_ticks": self.builder.duplicates,
            "feed_gaps": self.builder.gaps, "group_recreated": self.reader.recreated,
        }
        try:
            self.redis.hset(keys.ENGINE_STATE, mapping=mapping)
        except Exception as exc:
            log.warning("engine state not written (%s)", type(exc).__name__)

    # --- running ------------------------------------------------------------------------

    def start(self, bootstrap: bool = True) -> None:
        self.load_instruments()
        self.redis.hset(keys.ENGINE_STATE, mapping={"state": "STARTING", "pid": os.getpid(),
                                                    "started_at": f"{time.time():.3f}"})
        self.worker.start()
        if bootstrap:
            self.bootstrap()
        else:
            self._bootstrapped_day = datetime.now(IST).date()
        self.load_strategies()
        self.join_streams()
        self.advance()
        self._write_state("RUNNING")
        record("engine", f"engine running: {len(self.runners)} strategies, interval "
               f"{self.interval}, {len(self.watchlist)} watchlist symbols")

    def run_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
                self.housekeeping()
            except Exception as exc:  # a Redis or database blip: say so, wait, go on
                if self.stopping.is_set():
                    break
                log.warning("engine step failed (%s: %s); retrying in 1s",
                            type(exc).__name__, exc)
                close_old_connections()
                self.stopping.wait(1.0)
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.worker.stopping.set()
        self._write_state("STOPPED")

    def install_signal_handlers(self) -> None:
        def handle(signum, _frame):
            log.info("signal %s: stopping after this step", signum)
            self.stopping.set()

        signals.signal(signals.SIGTERM, handle)
        signals.signal(signals.SIGINT, handle)


__all__ = ["Engine", "Runner", "HistoryWorker", "MINUTE_MS"]
