"""The risk gate between strategy signals and order intents.

Checks, in order (the first that fails refuses the signal):

1. kill switch engaged                      -> everything refused
2. feed not CONNECTED, or its state not refreshed for ``FEED_STALE_SECONDS`` (the feed
   process died with CONNECTED written; keys.FEED_STATE)      -> exits only
3. trading window (NSE session, IST)        -> no new entries in the last
   ``RISK_ENTRY_CUTOFF_MINUTES`` before the close; exits only after
   ``RISK_SQUARE_OFF_TIME``; nothing outside the session. Skipped when the paper market is
   open around the clock (MARKET_ALWAYS_OPEN).
4. order value over ``RISK_MAX_ORDER_VALUE`` rupees (entries; an exit is bounded by the
   position, and refusing it would leave a position the square-off cannot close) -> refused
5. position after the order over ``RISK_MAX_POSITION_QTY`` or
   ``RISK_MAX_POSITION_VALUE`` rupees (entries)                -> refused
6. more than ``RISK_MAX_ORDERS_PER_MINUTE`` orders in the last 60 s (entries; exits are
   counted but never blocked: they reduce risk)                -> refused
7. today's P&L (realised + marked to the last price) at or below minus
   ``RISK_DAILY_LOSS_LIMIT`` rupees (entries)                  -> refused

An exit is an order that only reduces the current position. Every refusal goes to the
activity feed with its reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock

from django.conf import settings

from strategies.base import BUY, Signal
from tradebot import keys, state
from tradebot.market_hours import IST, SESSION_CLOSE, SESSION_OPEN, is_trading_day, require_aware

log = logging.getLogger(__name__)

# TODO: move to tradebot.keys. Sorted set of this engine's order times (epoch s).
RISK_ORDERS = getattr(keys, "RISK_ORDERS", keys.PREFIX + "risk:orders")
# The feed worker rewrites keys.FEED_STATE every second; older than this, it is not running.
FEED_STALE_SECONDS = 30.0


def _setting(name: str, default):
    return getattr(settings, name, default)


@dataclass(frozen=True)
class RiskLimits:
    entry_cutoff_minutes: int = 15
    square_off_time: clock = clock(15, 20)
    max_position_qty: int = 1000
    max_position_value_rupees: float = 200_000.0
    max_order_value_rupees: float = 100_000.0
    max_orders_per_minute: int = 20
    daily_loss_limit_rupees: float = 5_000.0
    always_open: bool = False

    @classmethod
    def from_settings(cls) -> RiskLimits:
        square_off = str(_setting("RISK_SQUARE_OFF_TIME", "15:20"))
        hour, minute = (int(part) for part in square_off.split(":"))
        return cls(
            entry_cutoff_minutes=int(_setting("RISK_ENTRY_CUTOFF_MINUTES", 15)),
            square_off_time=clock(hour, minute),
            max_position_qty=int(_setting("RISK_MAX_POSITION_QTY", 1000)),
            max_position_value_rupees=float(_setting("RISK_MAX_POSITION_VALUE", 200_000)),
            max_order_value_rupees=float(_setting("RISK_MAX_ORDER_VALUE", 100_000)),
            max_orders_per_minute=int(_setting("RISK_MAX_ORDERS_PER_MINUTE", 20)),
            daily_loss_limit_rupees=float(_setting("RISK_DAILY_LOSS_LIMIT", 5_000)),
            always_open=bool(_setting("MARKET_ALWAYS_OPEN", False)),
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    is_exit: bool
    code: str = ""


def is_reducing(position: int, signal: Signal) -> bool:
    """True when the order only brings the position closer to flat."""
    if position == 0:
        return False
    opposite = (signal.side == BUY) == (position < 0)
    return opposite and signal.quantity <= abs(position)


class RiskGate:
    def __init__(self, redis_client, limits: RiskLimits | None = None,
                 pnl_paise=None, clock_now=None) -> None:
        self.redis = redis_client
        self.limits = limits or RiskLimits.from_settings()
        self._pnl = pnl_paise or day_pnl_paise
        self._now = clock_now or (lambda: datetime.now(IST))
        self._feed_cache: tuple[float, str] = (0.0, "")

    # --- inputs -------------------------------------------------------------------------

    def feed_state(self) -> str:
        """The feed's state; "STALE" when the worker stopped refreshing it (it died with
        CONNECTED written). A hash without ``updated_at`` is taken at its word."""
        checked, value = self._feed_cache
        if time.monotonic() - checked > 1.0:
            try:
                value, updated = self.redis.hmget(keys.FEED_STATE, ["state", "updated_at"])
                value = value or "UNKNOWN"
                if updated and time.time() - float(updated) > FEED_STALE_SECONDS:
                    value = "STALE"
            except Exception:  # Redis unreachable: the feed cannot be trusted either
                value = "UNKNOWN"
            self._feed_cache = (time.monotonic(), value)
        return value

    def orders_last_minute(self) -> int:
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(RISK_ORDERS, "-inf", now - 60)
        pipe.zcard(RISK_ORDERS)
        return int(pipe.execute()[1])

    def note_order(self) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(RISK_ORDERS, {f"{now:.6f}": now})
        pipe.expire(RISK_ORDERS, 120)
        pipe.execute()

    # --- the gate -----------------------------------------------------------------------

    def check(self, instrument, signal: Signal, position: int, price_paise: int,
              strategy: str = "", now: datetime | None = None) -> Decision:
        """Allow or refuse; a refusal is recorded in the activity feed."""
        decision = self._decide(instrument, signal, position, price_paise,
                                require_aware(now or self._now()))
        if not decision.allowed:
            state.record(
                "risk",
                f"refused {signal.side} {signal.quantity} {instrument.symbol}"
                f"{f' ({strategy})' if strategy else ''}: {decision.reason}",
                level="warning",
                strategy=strategy, symbol=instrument.symbol, side=signal.side,
                quantity=signal.quantity, code=decision.code, signal_reason=signal.reason,
            )
        return decision

    def _decide(self, instrument, signal: Signal, position: int, price_paise: int,
                now: datetime) -> Decision:
        limits = self.limits
        exit_ = is_reducing(position, signal)
        if signal.is_exit and not exit_:
            return Decision(False, f"marked as an exit but position is {position}", False,
                            "bad_exit")
        if state.is_kill_switch_engaged():
            return Decision(False, "kill switch engaged", exit_, "kill_switch")

        feed = self.feed_state()
        if feed != "CONNECTED" and not exit_:
            return Decision(False, f"feed is {feed}: exits only", exit_, "feed")

        window = self._window(now, exit_)
        if window:
            return Decision(False, window, exit_, "window")

        if exit_:
            return Decision(True, "exit", True)
        value = signal.quantity * price_paise / 100
        if value > limits.max_order_value_rupees:
            return Decision(False, f"order value Rs {value:,.0f} over the limit of "
                            f"Rs {limits.max_order_value_rupees:,.0f}", False, "order_value")

        after = position + signal.signed_quantity
        if abs(after) > limits.max_position_qty:
            return Decision(False, f"position would be {after}, over the limit of "
                            f"{limits.max_position_qty}", False, "position_qty")
        position_value = abs(after) * price_paise / 100
        if position_value > limits.max_position_value_rupees:
            return Decision(False, f"position value would be Rs {position_value:,.0f}, over "
                            f"Rs {limits.max_position_value_rupees:,.0f}", False,
                            "position_value")

        recent = self.orders_last_minute()
        if recent >= limits.max_orders_per_minute:
            return Decision(False, f"{recent} orders in the last minute (limit "
                            f"{limits.max_orders_per_minute})", False, "orders_per_minute")

        pnl = self._pnl() / 100
        if pnl <= -limits.daily_loss_limit_rupees:
            return Decision(False, f"daily loss Rs {-pnl:,.0f} reached the limit of "
                            f"Rs {limits.daily_loss_limit_rupees:,.0f}", False, "daily_loss")
        return Decision(True, "entry", False)

    def _window(self, now: datetime, exit_: bool) -> str:
        """Why the trading window refuses this order now, or "" when it does not."""
        if self.limits.always_open:
            return ""
        local = now.astimezone(IST)
        moment = local.time()
        if not is_trading_day(local.date()) or not SESSION_OPEN <= moment < SESSION_CLOSE:
            return "market closed"
        if exit_:
            return ""
        if moment >= self.limits.square_off_time:
            return f"after the square-off time {self.limits.square_off_time:%H:%M}: exits only"
        close = datetime.combine(local.date(), SESSION_CLOSE, IST)
        cutoff_minutes = self.limits.entry_cutoff_minutes
        if (close - local).total_seconds() < cutoff_minutes * 60:
            return f"no new entries in the last {cutoff_minutes} minutes before the close"
        return ""

    def square_off_due(self, now: datetime | None = None) -> bool:
        """True from the square-off time to the close (the engine flattens positions)."""
        if self.limits.always_open:
            return False
        local = require_aware(now or self._now()).astimezone(IST)
        return (is_trading_day(local.date())
                and self.limits.square_off_time <= local.time() < SESSION_CLOSE)


_pnl_cache: tuple[float, int] = (0.0, 0)


def day_pnl_paise(max_age: float = 2.0) -> int:
    """Today's P&L over all instruments: fills since midnight IST, the open remainder
    marked at the last traded price (keys.LAST_PRICE). Cached for ``max_age`` seconds."""
    global _pnl_cache
    checked, value = _pnl_cache
    if time.monotonic() - checked < max_age:
        return value
    value = _compute_day_pnl()
    _pnl_cache = (time.monotonic(), value)
    return value


def _compute_day_pnl() -> int:
    try:
        from orders.models import Fill
    except ImportError:
        return 0
    from broker.factory import get_redis

    midnight = datetime.now(IST).replace(hour=0, minute=0, second=0, microsecond=0)
    books: dict[int, list] = {}
    # An order adopted from the broker may name an instrument we do not know.
    fills = Fill.objects.filter(
        filled_at__gte=midnight, order__instrument__isnull=False
    ).select_related("order__instrument")
    for fill in fills:
        instrument = fill.order.instrument
        assert instrument is not None  # the query leaves out orders without one
        book = books.setdefault(instrument.pk, [instrument, 0, 0])
        paise = int(fill.price * 100) * fill.quantity
        if fill.order.side == BUY:
            book[1] += fill.quantity
            book[2] -= paise
        else:
            book[1] -= fill.quantity
            book[2] += paise
    total = 0
    redis_client = get_redis()
    for instrument, net_qty, cash in books.values():
        total += cash
        if net_qty:
            field = f"{instrument.exchange_type}:{instrument.token}"
            ltp = redis_client.hget(keys.LAST_PRICE, field)
            if ltp is not None:
                total += net_qty * int(float(ltp))
    return total


def reset_pnl_cache() -> None:
    global _pnl_cache
    _pnl_cache = (0.0, 0)
