"""Helpers for tests and benchmarks of the candle builder and the engine."""

from __future__ import annotations

import time

from strategies.base import Strategy, register
from strategies.candles import MINUTE_MS
from tradebot import keys


def next_minute_ms(ahead: int = 1) -> int:
    """Start of the minute ``ahead`` minutes from now (exchange time in tests runs a little
    ahead of the wall clock, so candles close by later ticks, not by the clock)."""
    now = int(time.time() * 1000)
    return now - now % MINUTE_MS + ahead * MINUTE_MS


def tick_fields(token: str, ts: int, ltp: int, vol: int, seq: int, ltq: int = 10,
                ex: int = 1) -> dict:
    """A tick stream entry exactly as the feed writes it (CONTRACTS.md)."""
    return {"tk": token, "ex": ex, "ltp": ltp, "ts": ts, "seq": seq, "vol": vol, "ltq": ltq,
            "rx": int(time.time() * 1000)}


def xadd_ticks(client, ticks, ex: int = 1) -> list[str]:
    """XADD (token, ts, ltp, vol, seq) tuples to the segment's tick stream, pipelined."""
    stream = keys.TICKS_STREAM.format(exchange_type=ex)
    pipe = client.pipeline(transaction=False)
    for token, ts, ltp, vol, seq in ticks:
        pipe.xadd(stream, tick_fields(token, ts, ltp, vol, seq, ex=ex))
    return pipe.execute()


@register
class RecordingStrategy(Strategy):
    """Remembers every candle it is given; buys on the candles listed in ``buy_on``
    (start epoch ms), on every candle (``always_buy``) or on one instrument in ``one_in``
    each minute; raises on the candles listed in ``fail_on``."""

    kind = "recording"
    defaults = {"buy_on": [], "fail_on": [], "always_buy": False, "label": "", "one_in": 0}
    seen: list = []

    def on_candle(self, candle, position):
        type(self).seen.append((candle, self.live, self.params["label"], position))
        if candle.start_ms in self.params["fail_on"]:
            raise RuntimeError(f"strategy bug on {candle.start:%H:%M}")
        one_in = self.params["one_in"]
        if one_in and (candle.start_ms // 60_000 + int(candle.token)) % one_in == 0:
            return self.buy(f"test buy on {candle.start:%H:%M}")
        if self.params["always_buy"] or candle.start_ms in self.params["buy_on"]:
            return self.buy(f"test buy on {candle.start:%H:%M}")
        return None


def ensure_watchlist() -> None:
    """The seeded watchlist, again (transactional tests truncate the tables)."""
    from broker.watchlist import DEFAULT_WATCHLIST
    from feeds.models import Instrument

    for symbol, token, _ref in DEFAULT_WATCHLIST:
        Instrument.objects.get_or_create(
            exchange="NSE", token=token,
            defaults={"symbol": symbol, "exchange_type": 1, "on_watchlist": True,
                      "tick_size_paise": 5, "lot_size": 1, "active": True},
        )
