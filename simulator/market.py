"""The live paper market: one seeded random walk per instrument on the 5-paise grid.

Each instrument keeps the day's running numbers (open, high, low, volume, average price)
and a best-five book around the last price. In replay mode one instrument follows the
candles of a CSV file instead of the walk.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from collections.abc import Iterator

from broker import codec
from broker.codec import BookLevel, Depth20Tick, QuoteTick, SnapQuoteTick
from simulator.config import SimConfig

logger = logging.getLogger(__name__)

NSE = codec.EXCHANGE_TYPES["NSE"]
TICK_PAISE = 5
# Walk step in ticks and its weight: mostly small moves, now and then a larger one.
_STEPS = (-3, -2, -1, 0, 1, 2, 3)
_WEIGHTS = (1, 4, 12, 10, 12, 4, 1)


def to_grid(paise: float) -> int:
    """Round a price in paise to the nearest tick, never below one tick."""
    return max(TICK_PAISE, int(round(paise / TICK_PAISE)) * TICK_PAISE)


class InstrumentState:
    """One instrument's live numbers; ``advance`` moves it by one market update."""

    def __init__(self, symbol: str, token: str, ref_price: float, seed: int) -> None:
        self.symbol = symbol
        self.token = token
        self.exchange = "NSE"
        self.exchange_type = NSE
        self.key = (NSE, token)
        self.rng = random.Random(f"{seed}:live:{token}")
        self.ref_paise = to_grid(ref_price * 100)
        self.close_paise = self.ref_paise  # previous day's close
        self.ltp_paise = self.ref_paise
        self.open_paise = self.ref_paise
        self.high_paise = self.ref_paise
        self.low_paise = self.ref_paise
        self.volume = 0
        self.turnover_paise = 0
        self.last_qty = 0
        self.sequence = 0
        self.exchange_ts_ms = int(time.time() * 1000)
        self.total_buy = 0.0
        self.total_sell = 0.0
        self.upper_circuit = to_grid(self.ref_paise * 1.2)
        self.lower_circuit = to_grid(self.ref_paise * 0.8)
        self.high_52w = to_grid(self.ref_paise * 1.35)
        self.low_52w = to_grid(self.ref_paise * 0.7)
        self.next_due = 0.0
        self.replay: Iterator[tuple[int, int]] | None = None

    # --- the walk -------------------------------------------------------------------

    def advance(self, now_ms: int) -> None:
        rng = self.rng
        if self.replay is not None:
            price, qty = next(self.replay)
        else:
            step = rng.choices(_STEPS, _WEIGHTS)[0]
            # Pull gently back toward the reference so a long run stays near it.
            if self.ltp_paise > self.ref_paise * 1.08:
                step -= 1
            elif self.ltp_paise < self.ref_paise * 0.92:
                step += 1
            price = self.ltp_paise + step * TICK_PAISE
            price = min(max(price, self.lower_circuit), self.upper_circuit)
            qty = rng.randint(1, 250)
        self.sequence += 1
        self.exchange_ts_ms = now_ms
        self.ltp_paise = price
        self.last_qty = qty
        self.volume += qty
        self.turnover_paise += qty * price
        if self.sequence == 1:
            self.open_paise = self.high_paise = self.low_paise = price
        self.high_paise = max(self.high_paise, price)
        self.low_paise = min(self.low_paise, price)
        self.total_buy = float(rng.randint(20_000, 400_000))
        self.total_sell = float(rng.randint(20_000, 400_000))

    @property
    def avg_paise(self) -> int:
        return self.turnover_paise // self.volume if self.volume else self.ltp_paise

    @property
    def ltp(self) -> float:
        return self.ltp_paise / 100

    def book(self, levels: int) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """Best ``levels`` bids (highest first) and asks (lowest first) around the LTP."""
        rng = random.Random(self.sequence * 7919 + self.ltp_paise)
        bids = tuple(
            BookLevel(rng.randint(1, 3000), max(TICK_PAISE, self.ltp_paise - TICK_PAISE * i),
                      rng.randint(1, 40))
            for i in range(1, levels + 1)
        )
        asks = tuple(
            BookLevel(rng.randint(1, 3000), self.ltp_paise + TICK_PAISE * i, rng.randint(1, 40))
            for i in range(1, levels + 1)
        )
        return bids, asks

    # --- encoding ---------------------------------------------------------------------

    def encode(self, mode: int) -> bytes:
        if mode == codec.MODE_LTP:
            return codec.encode_ltp(
                self.exchange_type, self.token, self.sequence, self.exchange_ts_ms,
                self.ltp_paise,
            )
        if mode == codec.MODE_QUOTE:
            return codec.encode_quote(self.quote_tick())
        if mode == codec.MODE_SNAP_QUOTE:
            return codec.encode_snap_quote(self.snap_tick())
        return codec.encode_depth_20(self.depth_tick())

    def _quote_fields(
        self,
    ) -> tuple[int, str, int, int, int, int, int, int, float, float, int, int, int, int]:
        return (
            self.exchange_type, self.token, self.sequence, self.exchange_ts_ms,
            self.ltp_paise, self.last_qty, self.avg_paise, self.volume, self.total_buy,
            self.total_sell, self.open_paise, self.high_paise, self.low_paise,
            self.close_paise,
        )

    def quote_tick(self) -> QuoteTick:
        return QuoteTick(codec.MODE_QUOTE, *self._quote_fields())

    def snap_tick(self) -> SnapQuoteTick:
        bids, asks = self.book(5)
        return SnapQuoteTick(
            codec.MODE_SNAP_QUOTE, *self._quote_fields(),
            self.exchange_ts_ms, 0, 0.0, bids, asks,
            self.upper_circuit, self.lower_circuit, self.high_52w, self.low_52w,
        )

    def depth_tick(self) -> Depth20Tick:
        bids, asks = self.book(20)
        now_ms = int(time.time() * 1000)
        return Depth20Tick(
            codec.MODE_DEPTH_20, self.exchange_type, self.token, self.exchange_ts_ms, now_ms,
            bids, asks,
        )


class Market:
    """All instruments, looked up by token or by (exchange type, token)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.instruments: dict[str, InstrumentState] = {}
        for symbol, token, price in config.instruments:
            self.instruments[token] = InstrumentState(symbol, token, price, config.seed)
        self.by_key = {state.key: state for state in self.instruments.values()}
        self.by_symbol = {state.symbol: state for state in self.instruments.values()}
        self.updates = 0
        if config.replay_csv:
            self._start_replay(config.replay_csv, config.replay_token)

    def get(self, token: str) -> InstrumentState | None:
        return self.instruments.get(str(token))

    def _start_replay(self, path: str, token: str | None) -> None:
        rows = load_candle_csv(path)
        if not rows:
            raise ValueError(f"replay CSV {path} has no candle rows")
        state = self.instruments.get(token) if token else next(iter(self.instruments.values()))
        if state is None:
            raise ValueError(f"replay token {token} is not one of the instruments")
        first = to_grid(rows[0][0] * 100)
        state.ref_paise = state.close_paise = state.ltp_paise = first
        state.open_paise = state.high_paise = state.low_paise = first
        state.upper_circuit = to_grid(max(r[1] for r in rows) * 100 * 1.2)
        state.lower_circuit = to_grid(min(r[2] for r in rows) * 100 * 0.8)
        state.replay = replay_prices(rows)
        logger.info("replaying %d candles from %s on %s", len(rows), path, state.symbol)


def load_candle_csv(path: str) -> list[tuple[float, float, float, float, int]]:
    """Rows (open, high, low, close, volume) from a timestamp,open,high,low,close,volume file.

    A header line is skipped; so are lines that do not parse (counted in the log).
    """
    rows: list[tuple[float, float, float, float, int]] = []
    skipped = 0
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.reader(handle):
            try:
                o, h, low, c = (float(v) for v in record[1:5])
                v = int(float(record[5])) if len(record) > 5 else 0
            except (ValueError, IndexError):
                skipped += 1
                continue
            rows.append((o, h, low, c, v))
    if skipped > 1:  # one is the header
        logger.warning("replay CSV %s: %d lines did not parse and were skipped", path, skipped)
    return rows


def replay_prices(rows: list[tuple[float, float, float, float, int]]) -> Iterator[tuple[int, int]]:
    """Four ticks per candle (open, then low/high in the candle's direction, then close),
    the candle's volume split between them; loops back to the start at the end."""
    while True:
        for o, h, low, c, v in rows:
            path = (o, low, h, c) if c >= o else (o, h, low, c)
            share = max(1, v // 4)
            for price in path:
                yield to_grid(price * 100), share
