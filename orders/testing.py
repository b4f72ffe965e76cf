"""Helpers for the orders tests and benchmark: instruments, a real Celery worker process,
and waiting for intents to settle. Nothing here is used by the bot itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
from django.conf import settings

from broker.watchlist import DEFAULT_WATCHLIST

ROOT = Path(__file__).resolve().parent.parent
CELERY = ROOT / ".venv" / "bin" / "celery"


def instrument(index: int = 0):
    """A watchlist instrument the simulator knows (created if the table was flushed)."""
    from feeds.models import Instrument

    symbol, token, _ = DEFAULT_WATCHLIST[index]
    found, _ = Instrument.objects.get_or_create(
        exchange="NSE", token=str(token), defaults={"symbol": symbol, "on_watchlist": True}
    )
    return found


def wait_until(
    condition: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"
):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def settled(intent_ids: Iterable[int], states: Iterable[str]) -> bool:
    from orders.models import OrderIntent

    ids = list(intent_ids)
    wanted = set(states)
    return OrderIntent.objects.filter(pk__in=ids, status__in=wanted).count() == len(ids)


class Worker:
    """``celery -A tradebot worker -Q orders`` as a subprocess, with its pool children."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 1,
        name: str = "w1",
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.env = env
        self.concurrency = concurrency
        self.log_path = log_path or Path(settings.VAR_DIR) / f"test-worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Worker:
        log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the process' life)
        hostname = f"{self.name}-{os.getpid()}@%h"
        self.process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "tradebot",
                "worker",
                "-Q",
                "orders",
                "-c",
                str(self.concurrency),
                "-P",
                "prefork",
                "--without-mingle",
                "--without-gossip",
                "-n",
                hostname,
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout, 0.1, f"worker {self.name} to start")
        return self

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(
                f"worker {self.name} exited; see {self.log_path}:\n"
                + self.log_path.read_text(errors="replace")[-3000:]
            )
        return b"ready." in self.log_path.read_bytes()

    def children(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        return psutil.Process(self.process.pid).children()

    def kill_children(self) -> list[int]:
        """SIGKILL the pool processes (the main process stays and replaces them)."""
        pids = []
        for child in self.children():
            pids.append(child.pid)
            child.send_signal(signal.SIGKILL)
        return pids

    def kill(self) -> None:
        """SIGKILL the main process, then its pool: a crash or the OOM killer. Nothing
        acknowledges, rejects or re-sends the message in hand; it stays unacknowledged in
        Redis until the visibility timeout gives it to a worker again."""
        if self.process is None:
            return
        children = self.children()
        self.process.send_signal(signal.SIGKILL)
        for child in children:
            try:
                child.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        children = self.children()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in children:
                if child.is_running():
                    child.kill()
            self.process.kill()
            self.process.wait(5)
