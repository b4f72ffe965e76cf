"""Two example strategies: an EMA crossover and an opening-range breakout.

The EMA crossover is the demo default (``ema-crossover-demo``, EMA 3 over EMA 8 on
one-minute candles): primed by 200 bootstrapped candles, on 50 watchlist symbols some
cross within the first minute or two of live candles, so a paper order shows up soon after
``make run``.
"""

from __future__ import annotations

from datetime import time, timedelta

from strategies.base import Signal, Strategy, register
from strategies.candles import ClosedCandle


class Ema:
    """Exponential moving average, seeded with the simple average of the first values."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"EMA period must be at least 1, got {period}")
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self.value: float | None = None
        self._seed: list[float] = []

    def update(self, price: float) -> float | None:
        if self.value is None:
            self._seed.append(price)
            if len(self._seed) == self.period:
                self.value = sum(self._seed) / self.period
            return self.value
        self.value += self.alpha * (price - self.value)
        return self.value


@register
class EmaCrossover(Strategy):
    """Long when the fast EMA of closes crosses above the slow one; flat when it crosses
    back below (short too, with ``allow_short``)."""

    kind = "ema_crossover"
    defaults = {"fast": 3, "slow": 8, "allow_short": False}

    def __init__(self, instrument, params=None, quantity: int = 1) -> None:
        super().__init__(instrument, params, quantity)
        fast, slow = int(self.params["fast"]), int(self.params["slow"])
        if not 0 < fast < slow:
            raise ValueError(f"EMA crossover needs 0 < fast < slow, got {fast} and {slow}")
        self.fast, self.slow = Ema(fast), Ema(slow)
        self.previous: float | None = None  # fast - slow after the last candle

    def on_candle(self, candle: ClosedCandle, position: int) -> Signal | None:
        fast = self.fast.update(candle.close)
        slow = self.slow.update(candle.close)
        if fast is None or slow is None:
            return None
        previous, self.previous = self.previous, fast - slow
        if previous is None:
            return None
        where = f"EMA{self.fast.period} {fast / 100:.2f} / EMA{self.slow.period} {slow / 100:.2f}"
        if previous <= 0 < self.previous:
            if position < 0:
                return self.exit(position, f"crossed up, covering the short ({where})")
            if position == 0:
                return self.buy(f"fast EMA crossed above slow ({where})")
        elif previous >= 0 > self.previous:
            if position > 0:
                return self.exit(position, f"crossed down, closing the long ({where})")
            if position == 0 and self.params["allow_short"]:
                return self.sell(f"fast EMA crossed below slow ({where})")
        return None


@register
class OpeningRangeBreakout(Strategy):
    """Trade the first close outside the day's opening range (the first ``minutes`` of
    the session): long above its high, short below its low with ``allow_short``. The stop
    is the other side of the range; the target ``target_r`` times the range. One entry a
    day; the risk gate squares off before the close."""

    kind = "opening_range_breakout"
    defaults = {"minutes": 15, "target_r": 2.0, "allow_short": False}
    session_open = time(9, 15)

    def __init__(self, instrument, params=None, quantity: int = 1) -> None:
        super().__init__(instrument, params, quantity)
        self.day = None
        self.high: int | None = None  # the opening range so far, in paise
        self.low: int | None = None
        self.range_done = False
        self.traded = False
        self.entry: int | None = None

    def _new_day(self, day) -> None:
        self.day = day
        self.high = self.low = None
        self.range_done = False
        self.traded = False
        self.entry = None

    def on_candle(self, candle: ClosedCandle, position: int) -> Signal | None:
        start = candle.start
        if start.date() != self.day:
            self._new_day(start.date())
        opens = start.replace(hour=self.session_open.hour, minute=self.session_open.minute,
                              second=0, microsecond=0)
        range_end = opens + timedelta(minutes=int(self.params["minutes"]))
        if start < opens:
            return None
        if start < range_end:
            self.high = candle.high if self.high is None else max(self.high, candle.high)
            self.low = candle.low if self.low is None else min(self.low, candle.low)
            return None
        if self.high is None or self.low is None:  # both are set together
            return None  # no opening range seen today (started late): no trade
        self.range_done = True
        width = self.high - self.low
        reach = self.params["target_r"] * width
        if position > 0:
            if candle.close < self.low:
                return self.exit(position, f"stop: close {candle.close / 100:.2f} under the range")
            if self.entry is not None and candle.close >= self.entry + reach:
                return self.exit(position, f"target {self.params['target_r']}R reached")
            return None
        if position < 0:
            if candle.close > self.high:
                return self.exit(position, f"stop: close {candle.close / 100:.2f} over the range")
            if self.entry is not None and candle.close <= self.entry - reach:
                return self.exit(position, f"target {self.params['target_r']}R reached")
            return None
        if self.traded:
            return None
        if candle.close > self.high:
            self.traded, self.entry = True, candle.close
            return self.buy(f"close {candle.close / 100:.2f} above the opening range "
                            f"{self.low / 100:.2f}-{self.high / 100:.2f}")
        if candle.close < self.low and self.params["allow_short"]:
            self.traded, self.entry = True, candle.close
            return self.sell(f"close {candle.close / 100:.2f} below the opening range "
                             f"{self.low / 100:.2f}-{self.high / 100:.2f}")
        return None
