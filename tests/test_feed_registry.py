"""The subscription registry: one canonical set per connection, replayed in full."""

from __future__ import annotations

import json

import pytest

from feeds.registry import SubscriptionLimitError, SubscriptionRegistry
from feeds.testing import StaticCredentials, fast_config
from feeds.worker import FeedWorker


def replayed(registry: SubscriptionRegistry) -> list[dict]:
    return [json.loads(frame) for frame in registry.replay_requests()]


def test_it_deduplicates_and_reports_only_new_tokens():
    registry = SubscriptionRegistry()

    first = registry.subscribe(2, [(1, "3045"), (1, "3045"), (1, "2885")])
    again = registry.subscribe(2, [(1, "2885"), (2, "35001")])

    assert first == [(1, "3045"), (1, "2885")]
    assert again == [(2, "35001")]
    assert registry.snapshot() == {2: {1: ["2885", "3045"], 2: ["35001"]}}


def test_an_unsubscribed_token_never_comes_back_in_a_replay():
    registry = SubscriptionRegistry()
    registry.subscribe(2, [(1, "3045"), (1, "2885"), (1, "1594")])

    removed = registry.unsubscribe([(1, "2885"), (1, "99999")])

    assert removed == {2: [(1, "2885")]}
    (frame,) = replayed(registry)
    assert frame["action"] == 1
    assert frame["params"] == {
        "mode": 2, "tokenList": [{"exchangeType": 1, "tokens": ["1594", "3045"]}]
    }


def test_a_token_moved_to_another_mode_is_replayed_only_there():
    registry = SubscriptionRegistry()
    registry.subscribe(1, [(1, "3045"), (1, "2885")])

    registry.subscribe(3, [(1, "3045")])

    modes = {f["params"]["mode"]: f["params"]["tokenList"] for f in replayed(registry)}
    assert modes == {1: [{"exchangeType": 1, "tokens": ["2885"]}],
                     3: [{"exchangeType": 1, "tokens": ["3045"]}]}


def test_a_connection_carries_at_most_1000_tokens_sent_in_chunks():
    registry = SubscriptionRegistry()
    registry.subscribe(2, [(1, str(n)) for n in range(1000)])

    with pytest.raises(SubscriptionLimitError):
        registry.subscribe(2, [(1, "5000")])
    frames = replayed(registry)
    assert len(registry) == 1000
    assert [len(f["params"]["tokenList"][0]["tokens"]) for f in frames] == [500, 500]


def test_the_worker_shards_instruments_across_its_connections():
    worker = FeedWorker(fast_config("ws://127.0.0.1:9/x"), StaticCredentials(),
                        watchlist=lambda: set())
    for slot in range(3):
        worker._add_connection(slot)

    worker._apply_watchlist({(1, str(n)) for n in range(2500)})
    worker._apply_watchlist({(1, str(n)) for n in range(2500)} | {(1, "x1"), (1, "x2")})

    sizes = [len(c.registry) for c in worker.connections]
    assert sizes == [834, 834, 834]
    shards = [c.registry.keys() for c in worker.connections]
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2])
    assert len(worker.watchlist) == 2502
