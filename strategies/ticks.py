"""Reading the feed's tick streams through a Redis consumer group (runtime.md §4).

The engine is the group's consumer. At start-up it finds where the group stopped
(``last-delivered-id``), replays the stream from the start of the candle that was open
then (acknowledged entries, read with XRANGE, so the open candle is rebuilt whole), acks
its own pending entries and those of dead consumers (XAUTOCLAIM; they are inside the
replay), then reads new entries. Blocking reads are kept well under the client's socket
timeout. A ``NOGROUP`` answer (Redis restarted without its data, the stream deleted)
recreates the group and reading goes on.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import cast

import redis

log = logging.getLogger(__name__)

Entry = tuple[str, dict]  # (stream entry id, fields)
# The engine's clients decode responses: every id and field comes back as str. redis-py
# types replies for either kind of client (bytes | str), hence the casts to Entry below.

DEFAULT_GROUP = "engine"


def default_consumer() -> str:
    """Stable across restarts on one host, so a restarted engine finds its own PEL."""
    return f"engine@{socket.gethostname()}"


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _streams(reply) -> list[tuple[str, list[Entry]]]:
    """XREAD/XREADGROUP replies as [(stream, entries)], for RESP2 lists and RESP3 maps."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(name, entries[0] if entries and isinstance(entries[0], list) else entries)
                for name, entries in reply.items()]
    return [(name, entries) for name, entries in reply]


def block_ms_for(client: redis.Redis, wanted_ms: int = 1000) -> int:
    """A BLOCK at most half the socket timeout: a quiet stream must not look like a dead
    socket (redis-py raises TimeoutError when BLOCK outlasts socket_timeout)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if not timeout:
        return wanted_ms
    return max(1, min(wanted_ms, int(float(timeout) * 1000 / 2)))


class TickReader:
    """One consumer of one group over the tick streams."""

    def __init__(
        self,
        client: redis.Redis,
        streams: list[str],
        *,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        count: int = 1000,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.client = client
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer or default_consumer()
        self.count = count
        self.block_ms = block_ms_for(client, block_ms)
        self.claim_idle_ms = claim_idle_ms
        self.recreated = 0
        self.claimed = 0

    # --- the group ----------------------------------------------------------------------

    def ensure_group(self, stream: str, start_id: str = "$") -> str | None:
        """Create the group if missing (at ``start_id``); returns the group's
        last-delivered id when it already existed, else None."""
        try:
            self.client.xgroup_create(stream, self.group, id=start_id, mkstream=True)
            log.info("consumer group %s created on %s at %s", self.group, stream, start_id)
            return None
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        for info in self.client.xinfo_groups(stream):
            name = info.get("name")
            if name == self.group:
                return info.get("last-delivered-id")
        return None

    def _recreate(self, stream: str) -> None:
        """NOGROUP: Redis lost the group (or the stream). Everything now in the stream is
        newer than what was read, so the new group starts at its beginning."""
        self.recreated += 1
        log.warning("consumer group %s missing on %s (NOGROUP); recreating it", self.group,
                    stream)
        try:
            self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- start-up -----------------------------------------------------------------------

    def first_id(self, stream: str) -> str | None:
        first = cast("list[Entry] | None", self.client.xrange(stream, "-", "+", count=1))
        return first[0][0] if first else None

    def replay(self, stream: str, from_id: str, to_id: str) -> Iterator[list[Entry]]:
        """Entries in [from_id, to_id] in batches, without touching the group."""
        start = from_id
        while True:
            batch = cast(
                "list[Entry] | None", self.client.xrange(stream, start, to_id, count=self.count)
            )
            if not batch:
                return
            yield batch
            if len(batch) < self.count:
                return
            start = "(" + batch[-1][0]

    def settle_pending(self, stream: str) -> int:
        """Ack this consumer's pending entries and dead consumers' ones (idle longer than
        ``claim_idle_ms``); the caller replayed them already. Returns how many."""
        settled = 0
        while True:
            try:
                reply = self.client.xreadgroup(self.group, self.consumer, {stream: "0"},
                                               count=self.count)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self._recreate(stream)
                    return settled
                raise
            ids = [entry_id for _, entries in _streams(reply) for entry_id, _ in entries]
            if not ids:
                break
            self.client.xack(stream, self.group, *ids)
            settled += len(ids)
        for entry_id, _ in self.claim(stream, min_idle_ms=self.claim_idle_ms):
            self.client.xack(stream, self.group, entry_id)
            settled += 1
        return settled

    def claim(self, stream: str, min_idle_ms: int | None = None) -> list[Entry]:
        """Entries other consumers took and left unacked for ``min_idle_ms``."""
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        claimed: list[Entry] = []
        cursor = "0-0"
        while True:
            try:
                reply = self.client.xautoclaim(stream, self.group, self.consumer, idle, cursor,
                                               count=self.count)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self._recreate(stream)
                    return claimed
                raise
            cursor, entries = reply[0], reply[1]
            claimed.extend(e for e in entries if e and e[1] is not None)
            if cursor in ("0-0", b"0-0"):
                break
        if claimed:
            self.claimed += len(claimed)
            log.warning("claimed %d tick entries left pending by a dead consumer on %s",
                        len(claimed), stream)
        return claimed

    # --- steady state -------------------------------------------------------------------

    def read(self) -> list[tuple[str, list[Entry]]]:
        """New entries of every stream, blocking up to ``block_ms``."""
        try:
            reply = self.client.xreadgroup(
                self.group, self.consumer, {s: ">" for s in self.streams},
                count=self.count, block=self.block_ms,
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            for stream in self.streams:
                self._recreate(stream)
            return []
        return _streams(reply)

    def ack(self, stream: str, ids: list[str]) -> None:
        if ids:
            self.client.xack(stream, self.group, *ids)

    def lag(self) -> int:
        """Entries not yet delivered to the group, summed over the streams (Redis 7+)."""
        total = 0
        for stream in self.streams:
            try:
                for info in self.client.xinfo_groups(stream):
                    if info.get("name") == self.group:
                        total += int(info.get("lag") or 0)
            except redis.ResponseError:
                continue
        return total


def now_id(offset_ms: int = 0) -> str:
    return f"{int(time.time() * 1000) + offset_ms}-0"


__all__ = ["TickReader", "default_consumer", "block_ms_for", "now_id", "id_ms"]
