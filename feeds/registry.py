"""The canonical subscription set of one connection: mode -> exchange type -> tokens.

It is the only record of what a connection should receive. Every open replays it in
full; subscribe and unsubscribe edit it, so an unsubscribed token never comes back.
A token lives in one mode at a time: subscribing it in another mode moves it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from broker.codec import ACTION_SUBSCRIBE, ACTION_UNSUBSCRIBE, subscription_request

# The broker accepts 1000 tokens per connection; requests are sent in chunks of this.
MAX_TOKENS_PER_CONNECTION = 1000
_CHUNK = 500

Key = tuple[int, str]  # (exchange type, token)


class SubscriptionLimitError(ValueError):
    """More tokens than one connection may carry. The caller shards them or drops some."""


class SubscriptionRegistry:
    def __init__(self, limit: int = MAX_TOKENS_PER_CONNECTION) -> None:
        self.limit = limit
        self._modes: dict[int, dict[int, set[str]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return sum(len(tokens) for by_ex in self._modes.values() for tokens in by_ex.values())

    def _mode_of(self, key: Key) -> int | None:
        exchange_type, token = key
        for mode, by_ex in self._modes.items():
            if token in by_ex.get(exchange_type, ()):
                return mode
        return None

    def subscribe(self, mode: int, keys: Iterable[Key]) -> list[Key]:
        """Add tokens; returns those that were not already subscribed in this mode."""
        added: list[Key] = []
        with self._lock:
            for key in dict.fromkeys(keys):
                current = self._mode_of(key)
                if current == mode:
                    continue
                if current is None and self._count() >= self.limit:
                    raise SubscriptionLimitError(
                        f"connection already carries {self.limit} tokens; {key} not added"
                    )
                if current is not None:
                    self._discard(current, key)
                self._modes.setdefault(mode, {}).setdefault(key[0], set()).add(key[1])
                added.append(key)
        return added

    def unsubscribe(self, keys: Iterable[Key]) -> dict[int, list[Key]]:
        """Remove tokens from whatever mode holds them; returns what was removed, by mode."""
        removed: dict[int, list[Key]] = {}
        with self._lock:
            for key in dict.fromkeys(keys):
                mode = self._mode_of(key)
                if mode is not None:
                    self._discard(mode, key)
                    removed.setdefault(mode, []).append(key)
        return removed

    def _discard(self, mode: int, key: Key) -> None:
        by_ex = self._modes[mode]
        by_ex[key[0]].discard(key[1])
        if not by_ex[key[0]]:
            del by_ex[key[0]]
        if not by_ex:
            del self._modes[mode]

    def keys(self) -> set[Key]:
        with self._lock:
            return {
                (ex, token)
                for by_ex in self._modes.values()
                for ex, tokens in by_ex.items()
                for token in tokens
            }

    def snapshot(self) -> dict[int, dict[int, list[str]]]:
        """A copy: mode -> exchange type -> sorted tokens."""
        with self._lock:
            return {
                mode: {ex: sorted(tokens) for ex, tokens in sorted(by_ex.items())}
                for mode, by_ex in sorted(self._modes.items())
            }

    def replay_requests(self) -> list[str]:
        """Every subscribe frame needed to restore the whole set on a fresh connection."""
        frames: list[str] = []
        for mode, by_ex in self.snapshot().items():
            frames.extend(requests(ACTION_SUBSCRIBE, mode, by_ex))
        return frames


def requests(action: int, mode: int, by_ex: dict[int, list[str]]) -> list[str]:
    """Subscribe/unsubscribe frames for these tokens, at most _CHUNK tokens per frame."""
    flat = [(ex, token) for ex, tokens in sorted(by_ex.items()) for token in tokens]
    frames = []
    for start in range(0, len(flat), _CHUNK):
        chunk: dict[int, list[str]] = {}
        for ex, token in flat[start : start + _CHUNK]:
            chunk.setdefault(ex, []).append(token)
        verb = "sub" if action == ACTION_SUBSCRIBE else "unsub"
        frames.append(subscription_request(action, mode, chunk, f"{verb}{start // _CHUNK}"))
    return frames


def group(keys: Iterable[Key]) -> dict[int, list[str]]:
    by_ex: dict[int, list[str]] = {}
    for ex, token in sorted(keys):
        by_ex.setdefault(ex, []).append(token)
    return by_ex


__all__ = [
    "ACTION_SUBSCRIBE",
    "ACTION_UNSUBSCRIBE",
    "Key",
    "SubscriptionLimitError",
    "SubscriptionRegistry",
    "group",
    "requests",
]
