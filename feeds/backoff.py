"""Reconnect delays: at once first, then exponential with full jitter up to a cap.

The fast phase is ``fast_attempts`` long; after it the feed is declared DOWN and every
further attempt waits the cap. A connection that stays healthy for ``healthy_seconds``
resets the count, so the next drop is retried at once again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    first_max: float = 0.2  # the first retry waits at most this long (under 250 ms)
    base: float = 0.25  # attempt 2 waits up to base, attempt 3 up to 2*base, ...
    cap: float = 30.0
    fast_attempts: int = 10
    healthy_seconds: float = 30.0


class Backoff:
    def __init__(
        self, policy: BackoffPolicy | None = None, rand: Callable[[], float] = random.random
    ) -> None:
        self.policy = policy or BackoffPolicy()
        self._rand = rand
        self.attempt = 0

    @property
    def exhausted(self) -> bool:
        """True once the fast phase is used up (the feed is DOWN)."""
        return self.attempt >= self.policy.fast_attempts

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self) -> float:
        """Count one failed attempt and return how long to wait before the next one."""
        self.attempt += 1
        p = self.policy
        if self.attempt == 1:
            # Under first_max, never exactly zero, so a crowd of clients spreads out.
            return p.first_max * (0.2 + 0.8 * self._rand())
        if self.attempt > p.fast_attempts:
            return p.cap
        ceiling = min(p.cap, p.base * 2 ** (self.attempt - 2))
        return ceiling * self._rand()

    def connection_lasted(self, seconds: float, had_ticks: bool) -> None:
        """Reset the count when the connection that just ended had been healthy."""
        if had_ticks and seconds >= self.policy.healthy_seconds:
            self.reset()
