"""Deliver closed candles to strategies in order, holding back the incomplete ones.

A candle that spans a feed gap is never shown to a strategy as final. ``DeliveryQueue``
keeps each instrument's closed candles in time order; when the oldest one is incomplete
it asks for a repair (a ``getCandleData`` window from the last delivered candle to it,
which also brings candles the gap swallowed whole) and delivers nothing newer for that
instrument until the repair comes back. A repair that keeps failing is retried with
backoff; after ``max_hold_ms`` the incomplete candle is dropped (kept in the database as
incomplete, never delivered) and the instrument moves on. Outside the exchange session
the broker has no history to repair from, so an incomplete candle there is dropped at
once when the broker confirms it has nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from strategies.candles import (
    MINUTE_MS,
    SOURCE_REPAIRED,
    ClosedCandle,
    from_ms,
    in_session,
    interval_minutes,
)

log = logging.getLogger(__name__)

# A repair window never reaches further back than this (the gap before a restart can be
# long; the candles before it were delivered or are history already).
MAX_REPAIR_WINDOW_MS = 120 * MINUTE_MS


@dataclass
class RepairRequest:
    """Fetch ``interval`` candles of ``key`` starting in [from_ms, to_ms] (inclusive)."""

    key: str
    interval: str
    from_ms: int
    to_ms: int
    asked_at_ms: int
    attempts: int = 0
    next_try_ms: int = 0
    in_flight: bool = False

    def __str__(self) -> str:
        return (
            f"{self.key} {self.interval} {from_ms(self.from_ms):%H:%M}"
            f"..{from_ms(self.to_ms):%H:%M}"
        )


class DeliveryQueue:
    """Per-instrument ordered delivery of one interval's closed candles."""

    def __init__(
        self,
        interval: str,
        request_repair: Callable[[RepairRequest], None],
        *,
        max_hold_ms: int = 90_000,
        retry_ms: int = 3_000,
    ) -> None:
        self.interval = interval
        self.span_ms = interval_minutes(interval) * MINUTE_MS
        self.request_repair = request_repair
        self.max_hold_ms = max_hold_ms
        self.retry_ms = retry_ms
        self._queues: dict[str, deque[ClosedCandle]] = {}
        self._last: dict[str, int] = {}  # key -> start of the last delivered candle
        self._pending: dict[str, RepairRequest] = {}
        self.dropped: list[ClosedCandle] = []  # for the caller to record
        self.repaired: list[ClosedCandle] = []  # for the caller to store

    def delivered_through(self, key: str, start_ms: int) -> None:
        """Everything up to and including ``start_ms`` is known to the strategies
        (history); older live candles are ignored, newer ones delivered."""
        if start_ms > self._last.get(key, -1):
            self._last[key] = start_ms

    def last_delivered(self, key: str) -> int | None:
        return self._last.get(key)

    def push(self, candle: ClosedCandle) -> None:
        queue = self._queues.setdefault(candle.key, deque())
        if queue and candle.start_ms <= queue[-1].start_ms:
            for index, queued in enumerate(queue):  # rare: a replacement or an old candle
                if queued.start_ms == candle.start_ms:
                    if queued.complete and not candle.complete:
                        return
                    queue[index] = candle
                    return
            queue.append(candle)
            self._queues[candle.key] = deque(sorted(queue, key=lambda c: c.start_ms))
            return
        queue.append(candle)

    def held_keys(self) -> set[str]:
        return {key for key, queue in self._queues.items() if queue and not queue[0].complete}

    def take_ready(self, now_ms: int) -> list[ClosedCandle]:
        """Candles strategies may see now, oldest first per instrument."""
        ready: list[ClosedCandle] = []
        for key, queue in self._queues.items():
            while queue:
                head = queue[0]
                if head.start_ms <= self._last.get(key, -1):
                    queue.popleft()  # already delivered, or older than the history
                    continue
                if head.complete:
                    ready.append(queue.popleft())
                    self._last[key] = head.start_ms
                    self._pending.pop(key, None)
                    continue
                if not self._hold(key, head, now_ms):
                    queue.popleft()
                    continue
                break
        return ready

    def _hold(self, key: str, head: ClosedCandle, now_ms: int) -> bool:
        """Ask for (or wait on) a repair of ``head``; False when it is to be dropped."""
        request = self._pending.get(key)
        if request is None or request.to_ms != head.start_ms:
            last = self._last.get(key)
            start = head.start_ms
            if last is not None and head.start_ms - last <= MAX_REPAIR_WINDOW_MS:
                start = last + self.span_ms
            request = RepairRequest(key, self.interval, min(start, head.start_ms),
                                    head.start_ms, now_ms)
            self._pending[key] = request
        if now_ms - request.asked_at_ms > self.max_hold_ms:
            self._drop(key, head, f"not repaired within {self.max_hold_ms / 1000:.0f}s")
            return False
        if not request.in_flight and now_ms >= request.next_try_ms:
            request.in_flight = True
            request.attempts += 1
            self.request_repair(request)
        return True

    def _drop(self, key: str, head: ClosedCandle, why: str) -> None:
        self._pending.pop(key, None)
        self.dropped.append(head)
        log.debug("candle %s held back for good: %s", head, why)

    def resolve(self, request: RepairRequest, candles: list[ClosedCandle] | None,
                now_ms: int, error: str = "") -> None:
        """The answer to ``request``: the broker's candles for the window, or None when
        the fetch failed (``error`` says why); it is retried until the hold expires."""
        request.in_flight = False
        if self._pending.get(request.key) is not request:
            return  # superseded
        if candles is None:
            request.next_try_ms = now_ms + self.retry_ms * 2 ** min(request.attempts - 1, 4)
            log.warning("repair %s failed (%s); attempt %d, retry in %.1fs", request, error,
                        request.attempts, (request.next_try_ms - now_ms) / 1000)
            return
        queue = self._queues.setdefault(request.key, deque())
        by_start = {c.start_ms: c for c in queue}
        last = self._last.get(request.key, -1)
        for candle in candles:
            if candle.key != request.key or not request.from_ms <= candle.start_ms <= request.to_ms:
                continue
            if candle.start_ms <= last:
                continue
            fixed = replace(candle, source=SOURCE_REPAIRED, complete=True)
            by_start[candle.start_ms] = fixed
            self.repaired.append(fixed)
        self._queues[request.key] = deque(by_start[s] for s in sorted(by_start))
        head = self._queues[request.key][0] if self._queues[request.key] else None
        if head is None or head.complete:
            self._pending.pop(request.key, None)
            return
        if in_session(head.start_ms):
            request.next_try_ms = now_ms + self.retry_ms  # the broker may not have it yet
            return
        # Outside the session the broker has no candles at all: nothing to wait for.
        self._queues[request.key].popleft()
        self._drop(request.key, head, "outside the exchange session there is no history")
