"""Helpers for tests and the benchmark: run a feed worker in a thread, poll with deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from broker.watchlist import DEFAULT_WATCHLIST
from feeds.backoff import BackoffPolicy
from feeds.config import FeedConfig
from feeds.registry import Key
from feeds.worker import FeedWorker

T = TypeVar("T")

WATCHLIST: set[Key] = {(1, token) for _symbol, token, _ref in DEFAULT_WATCHLIST}


class TimedOut(AssertionError):
    """A condition a test waited for never came true; the test fails with the reason."""


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``predicate`` every 20 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def fast_config(url: str, **overrides) -> FeedConfig:
    """Short timers, so a test sees a whole recovery in a second or two."""
    values: dict[str, Any] = {
        "url": url,
        "watchdog_seconds": 1.5,
        "quiet_seconds": 30.0,
        "ping_interval": 1.0,
        "pong_timeout": 0.6,
        "ws_ping_interval": 0,
        "ws_ping_timeout": 1.0,
        "connect_timeout": 2.0,
        "backoff": BackoffPolicy(first_max=0.1, base=0.2, cap=1.0, healthy_seconds=2.0),
    }
    values.update(overrides)
    return FeedConfig(**values)


@contextmanager
def running_worker(worker: FeedWorker, stop_timeout: float = 6.0) -> Iterator[FeedWorker]:
    thread = threading.Thread(target=worker.run, name="feed-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop("test finished")
        thread.join(stop_timeout)
        if thread.is_alive():
            raise AssertionError(f"feed worker did not stop within {stop_timeout:.0f} s")


class StaticCredentials:
    """Fixed demo tokens, counting refreshes; for tests where no login is wanted."""

    def __init__(self) -> None:
        from feeds.credentials import FeedCredentials

        self.creds = FeedCredentials("S0001", "paper-api-key", "jwt-demo", "feed-demo")
        self.refreshes = 0
        self.current_calls = 0

    def current(self):
        self.current_calls += 1
        return self.creds

    def refresh(self, stale):
        self.refreshes += 1
        return self.creds


def make_worker(url: str, watchlist: set[Key] | None = None, **config) -> FeedWorker:
    """A worker on the session from settings (the simulator in tests), fast timers."""
    from feeds.credentials import SessionCredentials

    keys = set(WATCHLIST if watchlist is None else watchlist)
    connections = config.pop("connections", 1)
    worker_options = {
        name: config.pop(name)
        for name in ("now", "always_open", "writer", "clock", "client_code", "stop_on_kill_switch")
        if name in config
    }
    return FeedWorker(
        fast_config(url, **config), SessionCredentials(), connections=connections,
        watchlist=lambda: set(keys), **worker_options,
    )
