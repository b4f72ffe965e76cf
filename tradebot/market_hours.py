"""NSE trading calendar and session times, all in exchange time (Asia/Kolkata).

Every function takes an aware datetime, so the answers are the same on a UTC host.
The holiday list ships for the current year; a user extends it with
``NSE_HOLIDAYS_FILE`` (one ISO date per line) when NSE publishes the next list.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from tradebot.env import ConfigError

IST = ZoneInfo("Asia/Kolkata")

SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)

# NSE equity trading holidays for 2026 as published by the exchange; check the NSE
# circular each December and add the next year through NSE_HOLIDAYS_FILE.
_HOLIDAYS_2026 = (
    "2026-01-26", "2026-03-03", "2026-03-26", "2026-03-31", "2026-04-03",
    "2026-04-14", "2026-05-01", "2026-05-28", "2026-06-26", "2026-09-14",
    "2026-10-02", "2026-10-20", "2026-11-10", "2026-11-24", "2026-12-25",
)


class NaiveDatetimeError(ValueError):
    """A naive datetime reached exchange-time code. The caller has a bug to fix."""


def require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetimeError(f"naive datetime {moment!r}; exchange code needs tz-aware")
    return moment


def read_holidays_file(path: str) -> set[date]:
    """One ISO date per line, ``#`` comments allowed; a bad file names itself and the line."""
    days = set()
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                try:
                    days.add(date.fromisoformat(text))
                except ValueError:
                    raise ConfigError(
                        f"NSE_HOLIDAYS_FILE={path} line {number} is not a date "
                        f"(YYYY-MM-DD): {text!r}"
                    ) from None
    except OSError as exc:
        raise ConfigError(f"NSE_HOLIDAYS_FILE={path} cannot be read: {exc.strerror}") from None
    return days


@lru_cache(maxsize=1)
def holidays() -> frozenset[date]:
    days = {date.fromisoformat(d) for d in _HOLIDAYS_2026}
    path = os.environ.get("NSE_HOLIDAYS_FILE")
    if path:
        days |= read_holidays_file(path)
    return frozenset(days)


def calendar_covers(year: int) -> bool:
    """Is any NSE holiday known for ``year``? NSE publishes each year's list in
    December; without it every holiday of that year looks like a trading day."""
    return any(day.year == year for day in holidays())


def now_ist() -> datetime:
    return datetime.now(IST)


def to_ist(moment: datetime) -> datetime:
    return require_aware(moment).astimezone(IST)


def is_trading_day(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays()


def session_bounds(day: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(day, SESSION_OPEN, IST),
        datetime.combine(day, SESSION_CLOSE, IST),
    )


def is_market_open(moment: datetime, always_open: bool = False) -> bool:
    """True during the NSE normal session, or always when the paper market is 24x7."""
    if always_open:
        return True
    local = to_ist(moment)
    if not is_trading_day(local.date()):
        return False
    opens, closes = session_bounds(local.date())
    return opens <= local < closes


def previous_trading_day(day: date) -> date:
    day -= timedelta(days=1)
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


def next_open(moment: datetime) -> datetime:
    """The next session open at or after ``moment``."""
    local = to_ist(moment)
    day = local.date()
    while True:
        opens, closes = session_bounds(day)
        if is_trading_day(day) and local < closes:
            return max(opens, local) if local >= opens else opens
        day += timedelta(days=1)


def opens_within(moment: datetime, seconds: float, always_open: bool = False) -> bool:
    """True when the market is open at ``moment`` or opens within ``seconds`` of it."""
    if is_market_open(moment, always_open):
        return True
    return (next_open(moment) - to_ist(moment)).total_seconds() <= seconds
