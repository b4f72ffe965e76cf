"""Historical candles: deterministic per (seed, token, day), only in NSE sessions.

Each trading day gets a 375-minute path (09:15 to 15:29 one-minute candles) drawn from a
generator seeded by seed, token and date, so the same request always returns the same
rows and coarser intervals are exact aggregates of the one-minute path. The day's open
follows a mean-reverting level around the instrument's reference price, and each day's
path is a bridge from its open to the next level, so consecutive days join up.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import accumulate

from simulator.market import TICK_PAISE, to_grid
from tradebot.market_hours import IST, SESSION_OPEN, is_trading_day

# Interval name: (minutes per candle, or 0 for a day candle; max calendar days per request)
INTERVALS: dict[str, tuple[int, int]] = {
    "ONE_MINUTE": (1, 30),
    "THREE_MINUTE": (3, 60),
    "FIVE_MINUTE": (5, 100),
    "TEN_MINUTE": (10, 100),
    "FIFTEEN_MINUTE": (15, 200),
    "THIRTY_MINUTE": (30, 200),
    "ONE_HOUR": (60, 400),
    "ONE_DAY": (0, 2000),
}
SESSION_MINUTES = 375
DATE_FORMAT = "%Y-%m-%d %H:%M"
_EPOCH = date(2020, 1, 1)
_DAILY_VOL = 0.012
_REVERSION = 0.96
# Volume is U-shaped over the session: busy open and close, quiet lunch.
_VOLUME_SHAPE = tuple(
    1.0 + 2.0 * ((i - SESSION_MINUTES / 2) / (SESSION_MINUTES / 2)) ** 2
    for i in range(SESSION_MINUTES)
)

Candle = list  # [iso timestamp, open, high, low, close, volume]


class CandleRequestError(ValueError):
    """A candle request the broker would refuse; the route answers an error envelope."""


def parse_ist(text: str) -> datetime:
    try:
        return datetime.strptime(str(text).strip(), DATE_FORMAT).replace(tzinfo=IST)
    except ValueError as exc:
        raise CandleRequestError(f"Invalid date {text!r}; expected yyyy-MM-dd HH:mm") from exc


class CandleModel:
    def __init__(self, seed: int, ref_prices: dict[str, float]) -> None:
        self.seed = seed
        self.ref_prices = ref_prices
        self._levels: dict[str, list[float]] = {}
        self._minutes = lru_cache(maxsize=256)(self._minute_path)
        self._days: dict[tuple[str, date], tuple[int, int, int, int, int]] = {}

    def level(self, token: str, day: date) -> float:
        """Log-deviation of the day's opening level from the reference price."""
        index = (day - _EPOCH).days
        if index < 0:
            return 0.0
        levels = self._levels.setdefault(token, [0.0])
        while len(levels) <= index:
            rng = random.Random(f"{self.seed}:level:{token}:{len(levels)}")
            levels.append(levels[-1] * _REVERSION + rng.gauss(0.0, _DAILY_VOL))
        return levels[index]

    def _minute_path(self, token: str, day: date) -> tuple[tuple[int, int, int, int, int], ...]:
        """375 one-minute candles in paise: (open, high, low, close, volume)."""
        ref = self.ref_prices[token] * 100
        start = ref * math.exp(self.level(token, day))
        following = day + timedelta(days=1)
        while not is_trading_day(following):
            following += timedelta(days=1)
        end = ref * math.exp(self.level(token, following))
        rng = random.Random(f"{self.seed}:minutes:{token}:{day.isoformat()}")
        gauss, rand = rng.gauss, rng.random
        sigma = _DAILY_VOL / math.sqrt(SESSION_MINUTES)
        walk = list(accumulate(gauss(0.0, sigma) for _ in range(SESSION_MINUTES)))
        # A bridge: the walk with its end pinned to the next day's level.
        slope = (math.log(end / start) - walk[-1]) / SESSION_MINUTES
        wick = 1.6 * sigma
        rows = []
        previous = to_grid(start)
        for i, step in enumerate(walk):
            close = int(start * math.exp(step + slope * (i + 1)) / TICK_PAISE + 0.5) * TICK_PAISE
            top, bottom = (close, previous) if close > previous else (previous, close)
            high = int(top * (1.0 + rand() * wick) / TICK_PAISE + 0.5) * TICK_PAISE
            low = int(bottom * (1.0 - rand() * wick) / TICK_PAISE + 0.5) * TICK_PAISE
            volume = int((2_000 + rand() * 10_000) * _VOLUME_SHAPE[i])
            rows.append((previous, high, low, close, volume))
            previous = close
        return tuple(rows)

    def _day_summary(self, token: str, day: date) -> tuple[int, int, int, int, int]:
        key = (token, day)
        summary = self._days.get(key)
        if summary is None:
            path = self._minutes(token, day)
            summary = (path[0][0], max(m[1] for m in path), min(m[2] for m in path),
                       path[-1][3], sum(m[4] for m in path))
            self._days[key] = summary
        return summary

    def candles(
        self, token: str, interval: str, start: datetime, end: datetime, now: datetime
    ) -> list[Candle]:
        """Rows whose start time lies in [start, end] and not after ``now``."""
        if interval not in INTERVALS:
            raise CandleRequestError(f"Invalid interval {interval!r}")
        minutes, cap_days = INTERVALS[interval]
        if end < start:
            raise CandleRequestError("todate is before fromdate")
        if (end.date() - start.date()).days > cap_days:
            raise CandleRequestError(
                f"Date range exceeds {cap_days} days allowed for interval {interval}"
            )
        end = min(end, now)
        rows: list[Candle] = []
        day = start.date()
        while day <= end.date():
            if is_trading_day(day):
                rows.extend(self._day_rows(token, day, minutes, start, end))
            day += timedelta(days=1)
        return rows

    def _day_rows(
        self, token: str, day: date, minutes: int, start: datetime, end: datetime
    ) -> list[Candle]:
        session_open = datetime.combine(day, SESSION_OPEN, IST)
        if minutes == 0:
            stamp = datetime.combine(day, datetime.min.time(), IST)
            if not start.date() <= day <= end.date() or end < session_open:
                return []  # outside the range, or today before the open
            return [_row(stamp, (self._day_summary(token, day),))]
        path = self._minutes(token, day)
        rows = []
        for first in range(0, SESSION_MINUTES, minutes):
            stamp = session_open + timedelta(minutes=first)
            if start <= stamp <= end:
                rows.append(_row(stamp, path[first : first + minutes]))
        return rows


def _row(stamp: datetime, minutes: tuple) -> Candle:
    return [
        stamp.isoformat(),
        minutes[0][0] / 100,
        max(m[1] for m in minutes) / 100,
        min(m[2] for m in minutes) / 100,
        minutes[-1][3] / 100,
        sum(m[4] for m in minutes),
    ]
