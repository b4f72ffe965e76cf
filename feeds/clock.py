"""Time for the feed worker, behind one small interface so tests can drive it."""

from __future__ import annotations

import threading
import time


class Clock:
    """Real time. ``wait`` sleeps until the event is set or the time is up."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """True when the event was set (the caller should stop waiting early)."""
        return event.wait(max(0.0, seconds))


class ManualClock(Clock):
    """A clock that only moves when told, or by the waits the code under test asks for.

    ``waits`` lists every wait requested, in seconds, so a test can assert backoff timing
    without sleeping through it.
    """

    def __init__(self, start: float = 1_000.0, epoch: float = 1_767_000_000.0) -> None:
        self._now = start
        self._epoch_offset = epoch - start
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        return self.monotonic() + self._epoch_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.advance(max(0.0, seconds))
        return event.is_set()
