"""Connection slots: Angel allows 3 WebSocket connections per client code, across every
process. Each connection holds a lease in Redis (keys.FEED_SLOTS) that it renews; a
second feed process finds the slots taken and cannot open a fourth connection.
"""

from __future__ import annotations

import logging
import os
import uuid

import redis

from tradebot import keys

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 3

# Renew only a lease we still own; re-take it if it expired and nobody else has it.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not current then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 or 0
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SlotLeases:
    def __init__(
        self, client: redis.Redis, client_code: str, ttl_seconds: float = 15.0,
        max_slots: int = MAX_CONNECTIONS,
    ) -> None:
        self.client = client
        self.client_code = client_code
        self.ttl_ms = int(ttl_seconds * 1000)
        self.max_slots = max_slots
        self.owner = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.held: list[int] = []

    def _key(self, slot: int) -> str:
        return keys.FEED_SLOTS.format(client_code=self.client_code, slot=slot)

    def acquire(self, wanted: int) -> list[int]:
        """Take up to ``wanted`` free slots (on top of those held); returns all held."""
        for slot in range(self.max_slots):
            if len(self.held) >= wanted:
                break
            if slot in self.held:
                continue
            if self.client.set(self._key(slot), self.owner, nx=True, px=self.ttl_ms):
                self.held.append(slot)
        self.held.sort()
        return list(self.held)

    def renew(self) -> list[int]:
        """Extend every lease held; returns the slots lost to another owner."""
        lost = []
        for slot in list(self.held):
            if not self.client.eval(_RENEW, 1, self._key(slot), self.owner, self.ttl_ms):
                lost.append(slot)
                self.held.remove(slot)
        return lost

    def release(self) -> None:
        for slot in self.held:
            try:
                self.client.eval(_RELEASE, 1, self._key(slot), self.owner)
            except redis.RedisError:  # expires on its own within the ttl
                pass
        self.held = []
