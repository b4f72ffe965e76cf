"""Historical candles for every watchlist symbol before the strategies start.

For each symbol the last ``BOOTSTRAP_CANDLES`` candles of ``CANDLE_INTERVAL`` come from
``getCandleData``. Requests are split by the broker's per-interval day caps and cover only
trading days (``tradebot.market_hours``); every call goes through the shared rate limiter
(inside ``SmartApiClient``), and a few worker threads keep the limiter, not the network,
the bottleneck. A symbol gets three retries with backoff on transient faults; SUCCESS
with no data or too few candles counts as a failure. A symbol whose history cannot be had
falls back to live candles and is marked warming up; ``Backfill`` retries it later.

Progress lives in the Redis hash ``keys.BOOTSTRAP_STATE`` (loaded, warming_up, total, and
``symbol:<SYMBOL>`` = state) and in ``HistoryStatus`` rows for the admin.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings

from broker.errors import (
    BrokerError,
    ConfigurationError,
    RateLimitedError,
    RejectedError,
    SessionExpiredError,
    TransientError,
)
from broker.rest import CANDLE_INTERVAL_DAYS
from strategies.candles import (
    INTERVAL_MINUTES,
    ClosedCandle,
    candle_from_row,
    instrument_key,
    to_ms,
)
from tradebot import keys
from tradebot.market_hours import (
    IST,
    SESSION_CLOSE,
    SESSION_OPEN,
    is_trading_day,
    previous_trading_day,
    require_aware,
    session_bounds,
)

if TYPE_CHECKING:
    from feeds.models import Instrument

log = logging.getLogger(__name__)

# Calendar days one getCandleData request may span (smartapi.md §1.8).
DAY_CAPS = CANDLE_INTERVAL_DAYS
SESSION_MINUTES = 375

LOADING = "loading"
LOADED = "loaded"
WARMING_UP = "warming_up"

Fetch = Callable[[str, str, str, datetime, datetime], list]


class HistoryError(TransientError):
    """getCandleData answered SUCCESS with no rows or fewer than asked for.

    Treated like a transient fault for that symbol: retried with backoff, then the symbol
    falls back to live candles and the backfill tries again later.
    """


def candles_per_session(interval: str) -> int:
    if interval == "ONE_DAY":
        return 1
    return math.ceil(SESSION_MINUTES / INTERVAL_MINUTES[interval])


def history_windows(interval: str, count: int, now: datetime) -> list[tuple[datetime, datetime]]:
    """Request windows, newest first, that hold at least ``count`` closed candles.

    Only trading days are covered (weekends and holidays are skipped, a window never
    starts or ends on one) and no window spans more calendar days than the interval's cap.
    """
    now = require_aware(now).astimezone(IST)
    if interval not in DAY_CAPS:
        raise ValueError(f"unknown candle interval {interval!r}")
    per_session = candles_per_session(interval)
    days: list[date] = []
    have = 0
    today = now.date()
    if is_trading_day(today) and now.time() > SESSION_OPEN:
        days.append(today)
        elapsed = (min(now, session_bounds(today)[1]) - session_bounds(today)[0])
        minutes = INTERVAL_MINUTES.get(interval, SESSION_MINUTES)
        have += int(elapsed.total_seconds() // 60 // minutes) if interval != "ONE_DAY" else 0
    day = today
    while have < count:
        day = previous_trading_day(day)
        days.append(day)
        have += per_session

    cap = DAY_CAPS[interval]
    windows: list[tuple[datetime, datetime]] = []
    newest = days[0]
    oldest = newest
    for day in days[1:]:
        if (newest - day).days > cap - 1:
            windows.append(_window(oldest, newest, now))
            newest = day
        oldest = day
    windows.append(_window(oldest, newest, now))
    return windows


def _window(first: date, last: date, now: datetime) -> tuple[datetime, datetime]:
    start = datetime.combine(first, SESSION_OPEN, IST)
    end = min(datetime.combine(last, SESSION_CLOSE, IST), now.replace(second=0, microsecond=0))
    return start, end


def fetch_history(
    fetch: Fetch,
    exchange: str,
    exchange_type: int,
    token: str,
    interval: str,
    count: int,
    now: datetime,
) -> list[ClosedCandle]:
    """The last ``count`` closed candles, oldest first. Raises HistoryError when the broker
    gives none or too few, and BrokerError subclasses as the client raises them."""
    key = instrument_key(exchange_type, token)
    now_ms = to_ms(now)
    cap_at_close = not getattr(settings, "MARKET_ALWAYS_OPEN", False)
    found: dict[int, ClosedCandle] = {}
    for start, end in history_windows(interval, count, now):
        rows = fetch(exchange, token, interval, start, end)
        if not rows:
            raise HistoryError(
                f"SUCCESS without candles for {start:%Y-%m-%d}..{end:%Y-%m-%d}",
                route="getCandleData",
            )
        for row in rows:
            candle = candle_from_row(key, interval, row, cap_at_close=cap_at_close)
            if candle.end_ms <= now_ms:  # the candle still in progress is not history
                found[candle.start_ms] = candle
        if len(found) >= count:
            break
    if len(found) < count:
        raise HistoryError(f"only {len(found)} of {count} candles", route="getCandleData")
    return [found[start] for start in sorted(found)[-count:]]


@dataclass
class SymbolResult:
    instrument: Instrument
    key: str
    state: str = LOADING
    candles: list[ClosedCandle] = field(default_factory=list)
    attempts: int = 0
    error: str = ""


class BootstrapState:
    """The hash ``keys.BOOTSTRAP_STATE`` and the ``HistoryStatus`` rows."""

    def __init__(self, redis_client, interval: str) -> None:
        self.redis = redis_client
        self.interval = interval
        self._lock = threading.Lock()

    def begin(self, instruments: Sequence) -> None:
        from strategies.models import HistoryStatus

        mapping = {
            "total": len(instruments), "loaded": 0, "warming_up": 0, "loading": len(instruments),
            "interval": self.interval, "started_at": f"{time.time():.3f}", "finished_at": "",
        }
        for instrument in instruments:
            mapping[f"symbol:{instrument.symbol}"] = LOADING
        pipe = self.redis.pipeline()
        pipe.delete(keys.BOOTSTRAP_STATE)
        pipe.hset(keys.BOOTSTRAP_STATE, mapping=mapping)
        pipe.execute()
        for instrument in instruments:
            HistoryStatus.objects.update_or_create(
                instrument=instrument,
                defaults={"interval": self.interval, "state": LOADING, "attempts": 0,
                          "last_error": ""},
            )

    def set(self, result: SymbolResult) -> None:
        """Record one symbol's state and recount the totals from the hash."""
        from strategies.models import HistoryStatus

        with self._lock:
            name = f"symbol:{result.instrument.symbol}"
            self.redis.hset(keys.BOOTSTRAP_STATE, name, result.state)
            states = [v for k, v in self.redis.hgetall(keys.BOOTSTRAP_STATE).items()
                      if k.startswith("symbol:")]
            self.redis.hset(keys.BOOTSTRAP_STATE, mapping={
                "loaded": states.count(LOADED),
                "warming_up": states.count(WARMING_UP),
                "loading": states.count(LOADING),
                "total": len(states),
                "updated_at": f"{time.time():.3f}",
            })
        HistoryStatus.objects.filter(instrument=result.instrument).update(
            state=result.state, candles=len(result.candles), attempts=result.attempts,
            last_error=result.error[:300],
            **({"next_backfill_at": None} if result.state == LOADED else {}),
        )

    def schedule_backfill(self, instrument, in_seconds: float) -> None:
        """Show in the admin when a warming-up symbol's history is asked for again."""
        from django.utils import timezone

        from strategies.models import HistoryStatus

        HistoryStatus.objects.filter(instrument=instrument).update(
            next_backfill_at=timezone.now() + timedelta(seconds=in_seconds)
        )

    def finish(self) -> None:
        self.redis.hset(keys.BOOTSTRAP_STATE, "finished_at", f"{time.time():.3f}")

    def summary(self) -> str:
        state = self.redis.hgetall(keys.BOOTSTRAP_STATE)
        return (
            f"historical candles: {state.get('loaded', 0)}/{state.get('total', 0)} loaded, "
            f"{state.get('warming_up', 0)} warming up"
        )


class Bootstrap:
    """Loads history for many symbols at the rate the broker allows.

    ``fetch(exchange, token, interval, from_dt, to_dt)`` is ``getCandleData`` (rows); the
    default uses the shared broker session and a client that leaves retries to us.
    """

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        redis_client=None,
        interval: str | None = None,
        count: int | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        workers: int = 4,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from broker.factory import get_redis

        self.fetch = fetch or history_fetcher()
        self.redis = redis_client or get_redis()
        self.interval = interval or settings.CANDLE_INTERVAL
        self.count = count or int(getattr(settings, "BOOTSTRAP_CANDLES", 200))
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.workers = workers
        self.now = now or (lambda: datetime.now(IST))
        self.sleep = sleep
        self.state = BootstrapState(self.redis, self.interval)

    def load_symbol(self, instrument) -> SymbolResult:
        """History for one symbol with retries; never raises for broker faults."""
        key = instrument_key(instrument.exchange_type, instrument.token)
        result = SymbolResult(instrument, key)
        for attempt in range(1, self.retries + 2):
            result.attempts = attempt
            try:
                result.candles = fetch_history(
                    self.fetch, instrument.exchange, instrument.exchange_type,
                    instrument.token, self.interval, self.count, self.now(),
                )
                result.state = LOADED
                result.error = ""
                return result
            except (RejectedError, ConfigurationError) as error:
                result.error = str(error)
                log.warning("history %s: %s; not retried", instrument.symbol, error)
                break
            except (TransientError, RateLimitedError, SessionExpiredError) as error:
                result.error = str(error)
                if attempt > self.retries:
                    break
                wait = self._wait(attempt, error)
                log.warning(
                    "history %s: %s; retry %d of %d in %.2fs",
                    instrument.symbol, error, attempt, self.retries, wait,
                )
                self.sleep(wait)
            except BrokerError as error:  # AmbiguousError cannot happen on a read
                result.error = str(error)
                break
        result.state = WARMING_UP
        result.candles = []
        log.warning(
            "history %s: giving up after %d attempts (%s); live candles only, warming up",
            instrument.symbol, result.attempts, result.error,
        )
        return result

    def _wait(self, attempt: int, error: BrokerError) -> float:
        wait = min(self.backoff * 2 ** (attempt - 1), self.backoff_max) * random.uniform(0.75, 1)
        if isinstance(error, RateLimitedError):
            wait = max(wait, float(getattr(error, "retry_after", 1.0)))
        return wait

    def run(
        self,
        instruments: Iterable,
        progress: Callable[[int, int, SymbolResult], None] | None = None,
    ) -> dict[str, SymbolResult]:
        """Load every instrument; returns results by instrument key ("1:2885")."""
        instruments = list(instruments)
        self.state.begin(instruments)
        results: dict[str, SymbolResult] = {}
        done = 0
        lock = threading.Lock()

        def one(instrument) -> None:
            nonlocal done
            result = self.load_symbol(instrument)
            self.state.set(result)
            with lock:
                results[result.key] = result
                done += 1
                if progress:
                    progress(done, len(instruments), result)

        with ThreadPoolExecutor(max_workers=max(1, self.workers),
                                thread_name_prefix="bootstrap") as pool:
            for future in [pool.submit(one, i) for i in instruments]:
                future.result()
        self.state.finish()
        return results


def history_fetcher() -> Fetch:
    """getCandleData through the shared session, on a client without its own retries
    (the bootstrap counts and logs its retries itself), through the shared limiter."""
    from broker import factory

    client = factory.new_client(read_retries=0)
    session = factory.get_session()

    def fetch(exchange: str, token: str, interval: str, start: datetime, end: datetime):
        def call(session_client):
            client.set_jwt(session_client.jwt)
            return client.get_candle_data(exchange, token, interval, start, end)

        return session.call_with_session(call)

    return fetch


def trading_day_started(previous: date | None, now: datetime) -> bool:
    """True once per trading day, at the session open (the engine re-bootstraps then)."""
    local = require_aware(now).astimezone(IST)
    day = local.date()
    return previous != day and is_trading_day(day) and local.time() >= SESSION_OPEN

