"""Closed candles into the database (the record) and Redis (recent ones, for other processes).

Saving is an upsert on (instrument, interval, start), so saving the same candle twice
changes nothing, and a repaired candle replaces the incomplete one it repairs. History
merged after live candles never overwrites a complete live candle: the strategies have
seen that one already.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from strategies.candles import ClosedCandle, from_ms, to_ms
from tradebot import keys

log = logging.getLogger(__name__)

# Sorted set per interval and instrument, scored by start (epoch ms); member = JSON row
# [start_ms, open, high, low, close, volume, source, complete]. TODO: move to tradebot.keys.
CANDLES = getattr(keys, "CANDLES", keys.PREFIX + "candles:{interval}:{key}")
REDIS_KEEP = 1000


def candles_key(interval: str, key: str) -> str:
    return CANDLES.format(interval=interval, key=key)


class CandleStore:
    """Writes candles of known instruments; ``instruments`` maps "1:2885" -> Instrument."""

    def __init__(self, redis_client, instruments: dict, keep: int = REDIS_KEEP) -> None:
        self.redis = redis_client
        self.instruments = instruments
        self.keep = keep
        self._unknown: set[str] = set()

    def _instrument(self, key: str):
        instrument = self.instruments.get(key)
        if instrument is None and key not in self._unknown:
            self._unknown.add(key)
            log.warning("candles for unknown instrument %s are not stored", key)
        return instrument

    def save(self, candles: Iterable[ClosedCandle]) -> int:
        """Upsert candles in the database and Redis; returns how many were written."""
        from strategies.models import Candle

        rows = []
        kept = []
        for candle in candles:
            instrument = self._instrument(candle.key)
            if instrument is None:
                continue
            kept.append(candle)
            rows.append(Candle(
                instrument=instrument, interval=candle.interval, start=from_ms(candle.start_ms),
                open=candle.open, high=candle.high, low=candle.low, close=candle.close,
                volume=candle.volume, source=candle.source, complete=candle.complete,
            ))
        if not rows:
            return 0
        Candle.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["instrument", "interval", "start"],
            update_fields=["open", "high", "low", "close", "volume", "source", "complete",
                           "updated_at"],
        )
        self._to_redis(kept)
        return len(rows)

    def save_history(self, candles: list[ClosedCandle]) -> int:
        """Merge history: every candle except where a complete live one already exists."""
        from strategies.models import Candle

        if not candles:
            return 0
        by_key: dict[tuple[str, str], list[ClosedCandle]] = {}
        for candle in candles:
            by_key.setdefault((candle.key, candle.interval), []).append(candle)
        merged: list[ClosedCandle] = []
        for (key, interval), group in by_key.items():
            instrument = self._instrument(key)
            if instrument is None:
                continue
            first, last = min(c.start_ms for c in group), max(c.start_ms for c in group)
            keep_live = {
                to_ms(start)
                for start in Candle.objects.filter(
                    instrument=instrument, interval=interval, complete=True,
                    source__in=("live", "repaired"),
                    start__gte=from_ms(first), start__lte=from_ms(last),
                ).values_list("start", flat=True)
            }
            merged.extend(c for c in group if c.start_ms not in keep_live)
        return self.save(merged)

    def _to_redis(self, candles: list[ClosedCandle]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        touched = set()
        for candle in candles:
            name = candles_key(candle.interval, candle.key)
            touched.add(name)
            pipe.zremrangebyscore(name, candle.start_ms, candle.start_ms)
            pipe.zadd(name, {json.dumps(candle.as_row(), separators=(",", ":")): candle.start_ms})
        for name in touched:
            pipe.zremrangebyrank(name, 0, -self.keep - 1)
        try:
            pipe.execute()
        except Exception as exc:  # Redis down: the database row stands, Redis catches up
            log.warning("candles not mirrored to Redis (%s: %s)", type(exc).__name__, exc)

    def load(self, key: str, interval: str, count: int) -> list[ClosedCandle]:
        """The last ``count`` complete candles from the database, oldest first."""
        from strategies.models import Candle

        instrument = self.instruments.get(key)
        if instrument is None:
            return []
        rows = list(
            Candle.objects.filter(instrument=instrument, interval=interval, complete=True)
            .order_by("-start")[:count]
        )
        return [_from_model(key, row) for row in reversed(rows)]


def _from_model(key: str, row) -> ClosedCandle:
    from strategies.candles import DAY_MS, INTERVAL_MINUTES, MINUTE_MS

    start = to_ms(row.start)
    minutes = INTERVAL_MINUTES.get(row.interval)
    end = start + (minutes * MINUTE_MS if minutes else DAY_MS)
    return ClosedCandle(key, row.interval, start, end, row.open, row.high, row.low, row.close,
                        row.volume, row.source, row.complete)


def read_recent(redis_client, interval: str, key: str, count: int = 200) -> list[list]:
    """The last ``count`` rows mirrored in Redis, oldest first (for other processes)."""
    return [json.loads(m) for m in redis_client.zrange(candles_key(interval, key), -count, -1)]
