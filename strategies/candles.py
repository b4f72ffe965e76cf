"""Candles from ticks: one-minute candles by exchange time, and larger ones built from them.

Everything here works on exchange epoch milliseconds and integer paise, so the result does
not depend on the host's time zone. Buckets are aligned to the 09:15 IST session open
(IST is a fixed UTC+05:30, no DST). Datetimes appear only at the edges, always aware.

A candle closes when a later tick arrives for its instrument, when the stream's exchange
clock passes its end, or when the wall clock passes its end plus a short grace period.
A candle that may miss ticks (its instrument's sequence number jumped, the whole stream
was silent too long - also when it is closed by the wall clock with the stream silent -
a stream gap since the instrument's previous candle may have swallowed whole candles, or
it began before the builder started watching) closes as incomplete: the engine repairs it
from ``getCandleData`` or holds it back; strategies never see it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from tradebot.market_hours import IST, is_trading_day, require_aware

log = logging.getLogger(__name__)

# Intervals the builder can make live, in minutes (getCandleData names).
INTERVAL_MINUTES: dict[str, int] = {
    "ONE_MINUTE": 1,
    "THREE_MINUTE": 3,
    "FIVE_MINUTE": 5,
    "TEN_MINUTE": 10,
    "FIFTEEN_MINUTE": 15,
    "THIRTY_MINUTE": 30,
    "ONE_HOUR": 60,
}
ONE_MINUTE = "ONE_MINUTE"
MINUTE_MS = 60_000
DAY_MS = 86_400_000
_IST_OFFSET = IST.utcoffset(datetime(2000, 1, 1))
assert _IST_OFFSET is not None  # a named zone always has an offset
IST_OFFSET_MS = int(_IST_OFFSET.total_seconds() * 1000)
SESSION_OPEN_MS = (9 * 60 + 15) * MINUTE_MS  # 09:15 after local midnight
SESSION_CLOSE_MS = (15 * 60 + 30) * MINUTE_MS  # 15:30

OVERNIGHT_MS = 6 * 3_600_000  # a silence this long with a session-hours feed is a closure

SOURCE_HISTORICAL = "historical"
SOURCE_LIVE = "live"
SOURCE_REPAIRED = "repaired"


def interval_minutes(interval: str) -> int:
    try:
        return INTERVAL_MINUTES[interval]
    except KeyError:
        raise ValueError(
            f"unknown candle interval {interval!r}; one of {', '.join(INTERVAL_MINUTES)}"
        ) from None


def bucket_start_ms(ts_ms: int, minutes: int) -> int:
    """Start of the ``minutes``-long candle holding ``ts_ms``, aligned to 09:15 IST."""
    if minutes == 1:
        return ts_ms - ts_ms % MINUTE_MS
    span = minutes * MINUTE_MS
    local = ts_ms + IST_OFFSET_MS
    midnight = local - local % DAY_MS
    offset = (local - midnight - SESSION_OPEN_MS) // span * span + SESSION_OPEN_MS
    return midnight + offset - IST_OFFSET_MS


def candle_end_ms(start_ms: int, minutes: int, cap_at_close: bool = True) -> int:
    """End of the candle starting at ``start_ms``; the last one of a session stops at 15:30
    (the 15:15 hourly candle is 15 minutes long) unless ``cap_at_close`` is off."""
    end = start_ms + minutes * MINUTE_MS
    if cap_at_close and minutes > 1:
        local = start_ms + IST_OFFSET_MS
        close = local - local % DAY_MS + SESSION_CLOSE_MS - IST_OFFSET_MS
        if start_ms < close < end:
            return close
    return end


def in_session(ts_ms: int) -> bool:
    """True when ``ts_ms`` lies in an NSE normal session (09:15-15:30 on a trading day)."""
    local = ts_ms + IST_OFFSET_MS
    of_day = local % DAY_MS
    if not SESSION_OPEN_MS <= of_day < SESSION_CLOSE_MS:
        return False
    return is_trading_day(datetime.fromtimestamp(ts_ms / 1000, IST).date())


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime; a naive one raises NaiveDatetimeError."""
    return int(require_aware(moment).timestamp() * 1000)


def from_ms(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, IST)


def instrument_key(exchange_type: int | str, token: str) -> str:
    """How the builder names an instrument: "exchange type:token", as keys.LAST_PRICE."""
    return f"{exchange_type}:{token}"


@dataclass(frozen=True, slots=True)
class ClosedCandle:
    """A closed candle as strategies see it. Prices in paise, times in epoch ms."""

    key: str
    interval: str
    start_ms: int
    end_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    source: str = SOURCE_LIVE
    complete: bool = True

    @property
    def start(self) -> datetime:
        return from_ms(self.start_ms)

    @property
    def end(self) -> datetime:
        return from_ms(self.end_ms)

    @property
    def token(self) -> str:
        return self.key.split(":", 1)[1]

    @property
    def close_rupees(self) -> Decimal:
        return Decimal(self.close) / 100

    def as_row(self) -> list:
        return [
            self.start_ms, self.open, self.high, self.low, self.close, self.volume,
            self.source, int(self.complete),
        ]

    def __str__(self) -> str:
        flag = "" if self.complete else " INCOMPLETE"
        return (
            f"{self.key} {self.interval} {self.start:%Y-%m-%d %H:%M} "
            f"O{self.open} H{self.high} L{self.low} C{self.close} V{self.volume}"
            f" {self.source}{flag}"
        )


def candle_from_row(key: str, interval: str, row: list, minutes: int | None = None,
                    cap_at_close: bool = True) -> ClosedCandle:
    """A getCandleData row ``[iso+05:30, o, h, l, c, v]`` (rupees) as a historical candle.

    A row whose time carries no offset is refused (NaiveDatetimeError): the broker always
    sends one, and guessing the zone is how a candle ends up five and a half hours off.
    """
    stamp = require_aware(datetime.fromisoformat(str(row[0])))
    start = to_ms(stamp)
    if minutes is None:
        minutes = INTERVAL_MINUTES.get(interval, 0)
    end = candle_end_ms(start, minutes, cap_at_close) if minutes else start + DAY_MS
    return ClosedCandle(
        key=key,
        interval=interval,
        start_ms=start,
        end_ms=end,
        open=_paise(row[1]),
        high=_paise(row[2]),
        low=_paise(row[3]),
        close=_paise(row[4]),
        volume=int(row[5] or 0),
        source=SOURCE_HISTORICAL,
        complete=True,
    )


def _paise(rupees) -> int:
    return int((Decimal(str(rupees)) * 100).to_integral_value())


class OpenCandle:
    """The one-minute candle being built for one instrument."""

    __slots__ = ("start_ms", "end_ms", "open", "high", "low", "close", "volume", "complete")

    def __init__(self, start_ms: int, ltp: int, volume: int, complete: bool) -> None:
        self.start_ms = start_ms
        self.end_ms = start_ms + MINUTE_MS
        self.open = self.high = self.low = self.close = ltp
        self.volume = volume
        self.complete = complete


class _Instrument:
    __slots__ = ("candle", "last_ts", "last_seq", "last_ltp", "last_vol")

    def __init__(self) -> None:
        self.candle: OpenCandle | None = None
        self.last_ts = -1
        self.last_seq = -1
        self.last_ltp = -1
        self.last_vol: int | None = None


class CandleBuilder:
    """One-minute candles from ticks of any number of instruments, by exchange time.

    ``add`` takes one tick (already parsed to ints); closed candles collect in ``closed``
    for the caller to take. Feeding the same tick twice changes nothing, and a tick older
    than the instrument's last one is dropped (counted in ``late``).

    Lost ticks are noticed two ways: the instrument's sequence number jumps (the feed
    numbers each instrument's ticks 1, 2, 3 ...; 0 = not numbered, as for indices), or the
    whole stream is silent for more than ``silence_ms``. A candle that may lack ticks for
    longer than ``tolerance_ms`` closes incomplete; so does one in which a sequence jump
    happened.
    """

    interval = ONE_MINUTE

    def __init__(
        self,
        *,
        silence_ms: int = 30_000,
        tolerance_ms: int = 2_000,
        grace_ms: int = 2_000,
        reorder_ms: int = 500,
        covered_since_ms: int | None = None,
        session_only: bool = False,
        by_sequence: bool = True,
    ) -> None:
        self.silence_ms = silence_ms
        self.tolerance_ms = tolerance_ms
        self.grace_ms = grace_ms
        self.reorder_ms = reorder_ms
        self.session_only = session_only
        self.by_sequence = by_sequence
        self.closed: list[ClosedCandle] = []
        self.ticks = 0
        self.late = 0
        self.duplicates = 0
        self.off_session = 0
        self.gaps = 0
        self.sequence_gaps = 0
        self._instruments: dict[str, _Instrument] = {}
        self._stream_ts = 0  # the latest exchange time seen on the stream
        # Spans of exchange time in which any instrument's ticks may be missing.
        self._missed: deque[tuple[float, int]] = deque(maxlen=32)
        self._started = False
        if covered_since_ms is not None:
            self.watching_since(covered_since_ms)

    # --- ticks --------------------------------------------------------------------------

    def add(self, key: str, ts: int, ltp: int, vol: int | None = None, ltq: int = 0,
            seq: int = 0) -> None:
        """Account one tick: exchange time ``ts`` (ms), price ``ltp`` (paise), day volume
        ``vol`` (None on an LTP-mode feed), last traded quantity ``ltq``, sequence ``seq``."""
        state = self._instruments.get(key)
        if state is None:
            state = self._instruments[key] = _Instrument()
        if not self._started:
            self.watching_since(ts)  # nothing was seen before the first tick
        elif ts > self._stream_ts:
            if ts - self._stream_ts > self.silence_ms:
                self._feed_gap(self._stream_ts, ts)
            self._stream_ts = ts

        last_ts = state.last_ts
        if ts < last_ts:
            self.late += 1
            return
        if ts == last_ts and seq == state.last_seq and ltp == state.last_ltp and (
            vol == state.last_vol
        ):
            self.duplicates += 1
            return
        if self.session_only and not in_session(ts):
            self.off_session += 1
            return
        self.ticks += 1
        skipped = self.by_sequence and seq > 0 and 0 < state.last_seq < seq - 1

        if vol is None:
            traded = ltq
        else:
            last_vol = state.last_vol
            if last_vol is None:
                traded = ltq  # first tick seen: only its own trade is known to be new
            elif vol >= last_vol:
                traded = vol - last_vol
            else:
                traded = vol  # the day volume restarted: a new trading day
            state.last_vol = vol
        state.last_ts = ts
        state.last_seq = seq
        state.last_ltp = ltp

        candle = state.candle
        start = ts - ts % MINUTE_MS
        if candle is not None and candle.start_ms == start:
            if ltp > candle.high:
                candle.high = ltp
            elif ltp < candle.low:
                candle.low = ltp
            candle.close = ltp
            candle.volume += traded
            if skipped:
                self._lost_ticks(key, candle, last_ts, ts)
            return
        if candle is not None:
            if skipped:
                self._lost_ticks(key, candle, last_ts, ts)
            self._close(key, state)
        complete = self._saw_all_of(start, ts, last_ts)
        if skipped and ts - max(start, last_ts) > self.tolerance_ms:
            complete = False
            self._lost_ticks(key, None, last_ts, ts)
        state.candle = OpenCandle(start, ltp, traded, complete)

    def _lost_ticks(self, key: str, candle: OpenCandle | None, since: int, until: int) -> None:
        self.sequence_gaps += 1
        if candle is not None:
            candle.complete = False
        # One line per instrument after every reconnect would flood INFO; the engine
        # reports the candles this leaves incomplete, once per batch.
        log.debug("ticks of %s lost between %s and %s IST (sequence jump)", key,
                 from_ms(since).strftime("%H:%M:%S"), from_ms(until).strftime("%H:%M:%S"))

    def _saw_all_of(self, start: int, first_ts: int, since: int = -1) -> bool:
        """False when ticks between the candle's start and its first tick may be missing,
        or when a feed gap after the instrument's previous tick (``since``) may have
        swallowed whole candles before this one (the repair then brings them back)."""
        after_previous = since - since % MINUTE_MS + MINUTE_MS if since >= 0 else start
        for missed_from, missed_to in self._missed:
            overlap = min(first_ts, missed_to) - max(start, missed_from)
            if overlap > self.tolerance_ms:
                return False
            if after_previous >= start:
                continue
            if self.session_only and missed_to - missed_from > OVERNIGHT_MS:
                continue  # the market was closed: no candles were lost
            swallowed = min(start, missed_to) - max(after_previous, missed_from)
            if swallowed > self.tolerance_ms:
                return False
        return True

    def _feed_gap(self, silent_from: int, silent_to: int) -> None:
        """The whole stream was silent: open candles overlapping the silence are incomplete."""
        self._missed.append((silent_from, silent_to))
        if self.session_only and silent_to - silent_from > OVERNIGHT_MS:
            return  # the market was closed (overnight, a weekend): nothing was lost
        self.gaps += 1
        for state in self._instruments.values():
            candle = state.candle
            if candle is None or not candle.complete:
                continue
            overlap = min(candle.end_ms, silent_to) - max(candle.start_ms, silent_from)
            if overlap > self.tolerance_ms:
                candle.complete = False
        log.warning(
            "feed gap of %.1fs in exchange time (%s to %s IST); candles in it are held for repair",
            (silent_to - silent_from) / 1000,
            from_ms(silent_from).strftime("%H:%M:%S"),
            from_ms(silent_to).strftime("%H:%M:%S"),
        )

    def watching_since(self, covered_ms: int) -> None:
        """Ticks before ``covered_ms`` (exchange time) were never seen: candles reaching
        back before it are incomplete. Called before the first tick."""
        self._missed.clear()
        self._missed.append((float("-inf"), covered_ms))
        self._stream_ts = max(self._stream_ts, covered_ms)
        self._started = True

    def last_gap(self) -> tuple[float, int] | None:
        return self._missed[-1] if self._missed else None

    def mark_gap(self, since: datetime, until: datetime) -> None:
        """Tell the builder that ticks were lost between two moments (the feed said so)."""
        self._feed_gap(to_ms(since), to_ms(until))

    # --- closing ------------------------------------------------------------------------

    def _close(self, key: str, state: _Instrument) -> None:
        candle = state.candle
        assert candle is not None  # every caller closes only an open candle
        state.candle = None
        self.closed.append(
            ClosedCandle(
                key, ONE_MINUTE, candle.start_ms, candle.end_ms, candle.open, candle.high,
                candle.low, candle.close, candle.volume, SOURCE_LIVE, candle.complete,
            )
        )

    def close_due_ms(self, now_ms: int) -> None:
        """Close candles whose end the stream's clock has passed, or the wall clock has
        passed by more than the grace period."""
        stream_due = self._stream_ts - self.reorder_ms
        wall_due = now_ms - self.grace_ms
        for key, state in self._instruments.items():
            candle = state.candle
            if candle is None:
                continue
            if candle.end_ms <= stream_due:
                self._close(key, state)
            elif candle.end_ms <= wall_due:
                # The stream never reached the end: when it went silent long before, the
                # feed stopped mid-candle and this close is stale, not final.
                if candle.end_ms - self._stream_ts > self.silence_ms:
                    candle.complete = False
                self._close(key, state)

    def close_due(self, now: datetime | None = None) -> None:
        self.close_due_ms(to_ms(now) if now is not None else int(time.time() * 1000))

    def take_closed(self) -> list[ClosedCandle]:
        closed, self.closed = self.closed, []
        return closed

    def open_candle(self, key: str) -> OpenCandle | None:
        state = self._instruments.get(key)
        return state.candle if state else None

    @property
    def stream_time_ms(self) -> int:
        return self._stream_ts


class IntervalAggregator:
    """Larger candles (3 to 60 minutes, aligned to 09:15) from closed one-minute candles.

    Feed it one-minute candles in time order per instrument; an aggregate closes when a
    one-minute candle past its end arrives, or from ``close_due_ms`` once its end plus the
    grace period has passed and no one-minute candle inside it is still being held. The
    first aggregate of an instrument is incomplete unless it began with its first minute.
    """

    def __init__(self, interval: str, *, grace_ms: int = 2_000, cap_at_close: bool = True) -> None:
        self.interval = interval
        self.minutes = interval_minutes(interval)
        self.grace_ms = grace_ms
        self.cap_at_close = cap_at_close
        self._open: dict[str, ClosedCandle] = {}
        self._seen: set[str] = set()
        self.closed: list[ClosedCandle] = []

    def add(self, candle: ClosedCandle) -> None:
        start = bucket_start_ms(candle.start_ms, self.minutes)
        current = self._open.get(candle.key)
        if current is not None and current.start_ms == start:
            self._open[candle.key] = replace(
                current,
                high=max(current.high, candle.high),
                low=min(current.low, candle.low),
                close=candle.close,
                volume=current.volume + candle.volume,
                complete=current.complete and candle.complete,
                source=current.source if candle.source == current.source else SOURCE_REPAIRED,
            )
            return
        if current is not None:
            if candle.start_ms < current.start_ms:
                return  # older than the open aggregate: its aggregate closed already
            self.closed.append(self._open.pop(candle.key))
        # The first aggregate after start-up may lack the minutes before the first one seen.
        first = candle.key not in self._seen
        self._seen.add(candle.key)
        self._open[candle.key] = replace(
            candle,
            interval=self.interval,
            start_ms=start,
            end_ms=candle_end_ms(start, self.minutes, self.cap_at_close),
            complete=candle.complete and not (first and candle.start_ms != start),
        )

    def close_due_ms(self, now_ms: int, held: Iterable[str] = ()) -> None:
        blocked = set(held)
        for key in [k for k, c in self._open.items()
                    if c.end_ms + self.grace_ms <= now_ms and k not in blocked]:
            self.closed.append(self._open.pop(key))

    def take_closed(self) -> list[ClosedCandle]:
        closed, self.closed = self.closed, []
        return closed
