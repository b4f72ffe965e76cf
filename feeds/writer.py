"""Ticks into Redis: a writer thread that XADDs a batch as soon as the readers pause.

Socket callbacks only decode and call ``put``; this thread does every Redis round trip.
When Redis is unreachable the writer keeps what it can (a bounded buffer that drops the
oldest ticks first, counted), retries with a short backoff and carries on when Redis is
back. The socket is never touched by a Redis problem.

Each batch is one EVALSHA of a small Lua script (all the XADDs of the batch and the
last-price HSETs, atomic): the feed process only joins each tick into two arguments,
which is what lets one process keep up with 20,000 ticks a second.

Known shortcoming: when the connection breaks after Redis ran a batch but before the
reply arrived, the batch is written again, so a Redis outage can duplicate one batch.
TODO: use XADD IDMP when Redis >= 8.6 is the minimum.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import redis

from tradebot import keys

log = logging.getLogger(__name__)


# One round trip per batch: Python only joins each tick's numbers into one argument and
# Redis runs the XADDs and the last-price HSETs. KEYS: last-price hash, last-tick-at hash,
# then one stream per exchange type in the batch; ARGV: maxlen, then two values per tick:
# the token (any text) and "slot,ex,ltp,ts,seq,vol,ltq,rx" (slot: the stream's KEYS
# index; vol and ltq empty for LTP ticks, which carry neither).
_XADD_BATCH = """
local maxlen = ARGV[1]
local price, at = {}, {}
for i = 2, #ARGV, 2 do
  local tk = ARGV[i]
  local slot, ex, ltp, ts, seq, vol, ltq, rx = string.match(ARGV[i + 1],
    '^(%d+),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  local stream = KEYS[tonumber(slot)]
  if vol == '' then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'tk', tk, 'ex', ex, 'ltp', ltp,
      'ts', ts, 'seq', seq, 'rx', rx)
  else
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'tk', tk, 'ex', ex, 'ltp', ltp,
      'ts', ts, 'seq', seq, 'vol', vol, 'ltq', ltq, 'rx', rx)
  end
  local field = ex .. ':' .. tk
  price[field] = ltp
  at[field] = ts
end
local function hset(key, values)
  local args = {}
  for field, value in pairs(values) do
    args[#args + 1] = field
    args[#args + 1] = value
    if #args >= 1000 then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('HSET', key, unpack(args))
  end
end
hset(KEYS[1], price)
hset(KEYS[2], at)
return (#ARGV - 1) / 2
"""


def _is_outage(exc: Exception) -> bool:
    """True when waiting may help: Redis down, loading, out of memory, read-only. False
    for an error the script raised on this batch (a key of the wrong type, bad data) and
    for bugs here; those drop the batch instead of blocking the stream behind it."""
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, redis.RedisError):
        return False
    return not (isinstance(exc, redis.ResponseError) and "user_script" in str(exc))


class _RateLimitedError:
    """The first occurrence at once, then at most one line per ``every`` seconds."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._next = 0.0
        self._pending = 0

    def hit(self, message: str, *args) -> None:
        self._pending += 1
        now = time.monotonic()
        if now >= self._next:
            log.error(message + " (%d such batches in the last %.0f s)", *args, self._pending,
                      self.every)
            self._pending = 0
            self._next = now + self.every


class TickEntry(NamedTuple):
    """One tick as the stream stores it (contract: CONTRACTS.md, tick stream entry)."""

    ex: int
    tk: str
    ltp: int
    ts: int
    seq: int
    vol: int | None
    ltq: int | None
    rx: int


class TickWriter:
    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        maxlen: int = 500_000,
        buffer_max: int = 200_000,
        flush_interval: float = 0.001,
        batch_max: int = 2_000,
        keep_latencies: int = 0,
        on_outage: Callable[[str, dict], None] | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._client: redis.Redis | None = None
        self._sha = ""
        self.maxlen = maxlen
        self.buffer_max = buffer_max
        self.flush_interval = flush_interval
        self.batch_max = batch_max
        self._buffer: deque[TickEntry] = deque(maxlen=buffer_max)
        self._retry: list[TickEntry] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streams: dict[int, str] = {}
        self._on_outage = on_outage
        self.written = 0
        self.dropped = 0
        self.outage_since: float | None = None
        self.last_error = ""
        self._rejected = _RateLimitedError()
        self.latencies_ms: deque[float] = deque(maxlen=keep_latencies or 1)
        self._keep_latencies = keep_latencies > 0

    # --- called from socket threads ------------------------------------------------

    def put(self, entry: TickEntry) -> None:
        buffer = self._buffer
        if len(buffer) >= self.buffer_max:
            self.dropped += 1  # the deque drops the oldest entry on append
        buffer.append(entry)
        if len(buffer) == 1:
            self._wake.set()

    # --- lifecycle -----------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._buffer) + len(self._retry)

    @property
    def redis_ok(self) -> bool:
        return self.outage_since is None

    def start(self) -> TickWriter:
        self._thread = threading.Thread(target=self._run, name="feed-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Flush what Redis will take within ``timeout``, then end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while True:
            if not self._retry and not self._buffer:
                if self._stop.is_set():
                    return
                self._wake.wait(0.05)
                self._wake.clear()
                self._gather()
                continue
            batch = self._retry or self._take_batch()
            try:
                self._write(batch)
            except Exception as exc:  # Redis down or refusing: keep the batch, retry
                if not _is_outage(exc):  # a batch that can never be written: drop it
                    self._discard(batch, exc)
                    continue
                self._retry = batch
                self._outage(exc)
                if self._stop.is_set():
                    log.warning("feed stopping with Redis unreachable: %d ticks not written",
                                self.buffered)
                    return
                continue
            self._retry = []
            if self.outage_since is not None:
                self._recovered()

    def _gather(self) -> None:
        """Let the batch grow while the socket threads are still adding to it (a burst
        being read), for at most ``flush_interval``; go as soon as they stop. Each
        ``sleep(0)`` hands the GIL over, so one loop is one turn of the readers."""
        buffer = self._buffer
        deadline = time.monotonic() + self.flush_interval
        seen = len(buffer)
        while seen < self.batch_max:
            time.sleep(0)
            now_seen = len(buffer)
            if now_seen == seen or time.monotonic() >= deadline:
                return
            seen = now_seen

    def _take_batch(self) -> list[TickEntry]:
        buffer = self._buffer
        count = min(len(buffer), self.batch_max)
        popleft = buffer.popleft
        return [popleft() for _ in range(count)]

    # --- Redis ---------------------------------------------------------------------

    def _stream(self, exchange_type: int) -> str:
        name = self._streams.get(exchange_type)
        if name is None:
            name = self._streams[exchange_type] = keys.TICKS_STREAM.format(
                exchange_type=exchange_type
            )
        return name

    def _write(self, batch: list[TickEntry]) -> None:
        if self._client is None:
            self._client = self._client_factory()
            self._sha = self._client.script_load(_XADD_BATCH)
        streams: list[str] = [keys.LAST_PRICE, keys.LAST_TICK_AT]
        slots: dict[int, int] = {}
        args: list = [self.maxlen]
        append = args.append
        for ex, tk, ltp, ts, seq, vol, ltq, rx in batch:
            slot = slots.get(ex)
            if slot is None:
                streams.append(self._streams.get(ex) or self._stream(ex))
                slot = slots[ex] = len(streams)
            append(tk)
            if vol is None:
                append(f"{slot},{ex},{ltp},{ts},{seq},,,{rx}")
            else:
                append(f"{slot},{ex},{ltp},{ts},{seq},{vol},{ltq},{rx}")
        try:
            self._client.execute_command("EVALSHA", self._sha, len(streams), *streams, *args)
        except redis.exceptions.NoScriptError:  # Redis restarted and forgot the script
            self._sha = self._client.script_load(_XADD_BATCH)
            self._client.execute_command("EVALSHA", self._sha, len(streams), *streams, *args)
        self.written += len(batch)
        if self._keep_latencies:
            now_ms = time.time() * 1000
            self.latencies_ms.extend(now_ms - entry.ts for entry in batch)

    def _discard(self, batch: list[TickEntry], exc: Exception) -> None:
        """Drop a batch Redis will never take (or that hit a bug here), counted, so one bad
        batch cannot stop every tick behind it. Not retried: the script may have written
        part of it before failing, and a retry would add that part again."""
        self._retry = []
        self.dropped += len(batch)
        self.last_error = f"tick batch dropped: {exc.__class__.__name__}: {exc}"[:200]
        self._rejected.hit("Redis rejected a batch of %d ticks; dropped: %s: %s",
                           len(batch), exc.__class__.__name__, exc)

    def _outage(self, exc: Exception) -> None:
        now = time.monotonic()
        self.last_error = f"redis: {exc.__class__.__name__}: {exc}"[:200]
        if self.outage_since is None:
            self.outage_since = now
            self._attempts = 0
            self._next_log = now + 5.0
            log.warning(
                "Redis unreachable (%s: %s); keeping the socket, buffering up to %d ticks",
                exc.__class__.__name__, exc, self.buffer_max,
            )
            if self._on_outage:
                self._on_outage("down", {"error": self.last_error})
        self._attempts += 1
        wait = min(1.0, 0.05 * 2 ** min(self._attempts, 5))
        if now >= self._next_log:
            self._next_log = now + 5.0
            log.warning(
                "Redis write attempt %d failed after %.1f s down: %d ticks buffered, "
                "%d dropped; retrying in %.2f s",
                self._attempts, now - self.outage_since, self.buffered, self.dropped, wait,
            )
        self._stop.wait(wait)

    def _recovered(self) -> None:
        assert self.outage_since is not None
        down_for = time.monotonic() - self.outage_since
        self.outage_since = None
        self.last_error = ""
        log.info(
            "Redis reachable again after %.1f s; buffered ticks written, %d dropped in all",
            down_for, self.dropped,
        )
        if self._on_outage:
            self._on_outage("up", {"down_seconds": round(down_for, 1), "dropped": self.dropped})
