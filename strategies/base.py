"""The strategy interface: closed candles and the current position in, signals out.

Write a strategy by subclassing ``Strategy`` and registering it::

    @register
    class Breakout(Strategy):
        kind = "breakout"
        defaults = {"lookback": 20}

        def on_candle(self, candle, position):
            highs = [c.high for c in self.history[-self.params["lookback"] - 1:-1]]
            if position == 0 and highs and candle.close > max(highs):
                return self.buy("close above the 20-candle high")
            return None

The engine makes one instance per (strategy configuration, instrument). It calls
``on_candle`` once per closed, complete candle of its interval, oldest first: first the
bootstrapped history (``self.live`` is False; signals are ignored), then live candles
(``self.live`` is True). ``self.history`` holds the candles seen so far, the newest last,
including the one being passed. ``position`` is the instrument's net quantity (positive =
long, negative = short) from the orders module. Return ``None``, a ``Signal`` or a list.

Candles are ``strategies.candles.ClosedCandle``: prices are integer paise
(``candle.close``), times aware IST datetimes (``candle.start``).

A strategy that raises is paused (with the error in the activity feed); the others go on.
Signals pass the risk gate (``strategies.risk``) before they become order intents.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from strategies.candles import ClosedCandle

BUY = "BUY"
SELL = "SELL"

REGISTRY: dict[str, type[Strategy]] = {}


@dataclass(frozen=True)
class Signal:
    """What a strategy wants: an order of ``quantity`` on ``side``.

    ``is_exit`` marks an order that only reduces the position (exits pass when entries
    are refused). ``price`` (paise) makes it a LIMIT order; None = MARKET.
    """

    side: str
    quantity: int
    reason: str
    is_exit: bool = False
    price: int | None = None

    def __post_init__(self) -> None:
        if self.side not in (BUY, SELL):
            raise ValueError(f"signal side must be BUY or SELL, got {self.side!r}")
        if int(self.quantity) != self.quantity or self.quantity <= 0:
            raise ValueError(f"signal quantity must be a positive integer, got {self.quantity!r}")

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == BUY else -self.quantity


class Strategy:
    """Base class. Subclasses set ``kind`` and ``defaults`` and implement ``on_candle``."""

    kind: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    history_size: ClassVar[int] = 500

    def __init__(self, instrument, params: dict[str, Any] | None = None,
                 quantity: int = 1) -> None:
        self.instrument = instrument
        self.params = {**self.defaults, **(params or {})}
        self.quantity = int(self.params.get("quantity", quantity))
        self.history: deque[ClosedCandle] = deque(maxlen=self.history_size)
        self.live = False

    def feed(self, candle: ClosedCandle, position: int) -> list[Signal]:
        """Engine entry point: record the candle, ask the strategy, normalise the answer."""
        self.history.append(candle)
        answer = self.on_candle(candle, position)
        if answer is None:
            return []
        signals = [answer] if isinstance(answer, Signal) else list(answer)
        for signal in signals:
            if not isinstance(signal, Signal):
                raise TypeError(f"{type(self).__name__} returned {signal!r}, not a Signal")
        return signals

    def on_candle(self, candle: ClosedCandle, position: int) -> Signal | list[Signal] | None:
        raise NotImplementedError

    # --- helpers for subclasses ---------------------------------------------------------

    def buy(self, reason: str, quantity: int | None = None, **kw: Any) -> Signal:
        return Signal(BUY, quantity or self.quantity, reason, **kw)

    def sell(self, reason: str, quantity: int | None = None, **kw: Any) -> Signal:
        return Signal(SELL, quantity or self.quantity, reason, **kw)

    def exit(self, position: int, reason: str) -> Signal | None:
        """The order that flattens ``position``, or None when flat."""
        if position == 0:
            return None
        return Signal(SELL if position > 0 else BUY, abs(position), reason, is_exit=True)


def register(cls: type[Strategy]) -> type[Strategy]:
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a kind")
    REGISTRY[cls.kind] = cls
    return cls


def strategy_class(kind: str) -> type[Strategy]:
    import strategies.examples  # noqa: F401  (registers the shipped strategies)

    try:
        return REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"no strategy kind {kind!r}; known: {known}") from None
