"""Ticks in Redis: the stream entry of the contract, the last-price hash, trimming."""

from __future__ import annotations

from feeds.testing import wait_for
from feeds.worker import redis_client as fast_redis
from feeds.writer import TickEntry, TickWriter
from tradebot import keys


def test_each_tick_becomes_one_stream_entry_with_numeric_fields(redis_client):
    writer = TickWriter(fast_redis).start()

    writer.put(TickEntry(1, "3045", 80515, 1_767_000_000_123, 41, 1200, 15, 1_767_000_000_130))
    writer.put(TickEntry(1, "3045", 80520, 1_767_000_000_456, 42, None, None, 1_767_000_000_460))
    wait_for(lambda: writer.written == 2, 3, "two ticks written")
    writer.stop()

    entries = [fields for _id, fields in redis_client.xrange(keys.TICKS_STREAM.format(
        exchange_type=1))]
    assert entries == [
        {"tk": "3045", "ex": "1", "ltp": "80515", "ts": "1767000000123", "seq": "41",
         "vol": "1200", "ltq": "15", "rx": "1767000000130"},
        {"tk": "3045", "ex": "1", "ltp": "80520", "ts": "1767000000456", "seq": "42",
         "rx": "1767000000460"},
    ]
    assert redis_client.hget(keys.LAST_PRICE, "1:3045") == "80520"
    assert redis_client.hget(keys.LAST_TICK_AT, "1:3045") == "1767000000456"


def test_the_stream_is_trimmed_near_maxlen(redis_client):
    writer = TickWriter(fast_redis, maxlen=1000).start()

    for n in range(5000):
        writer.put(TickEntry(2, "35001", 100 + n, n, n, 1, 1, n))
    wait_for(lambda: writer.written == 5000, 5, "5000 ticks written")
    writer.stop()

    length = redis_client.xlen(keys.TICKS_STREAM.format(exchange_type=2))
    assert 1000 <= length < 1300  # MAXLEN ~ trims whole nodes only
    assert redis_client.hget(keys.LAST_PRICE, "2:35001") == str(100 + 4999)


def test_one_batch_across_exchange_types_fills_each_stream_and_both_hashes(redis_client):
    writer = TickWriter(fast_redis)
    batch = [
        TickEntry(1, "3045", 80515, 1_000, 1, None, None, 1_001),
        TickEntry(2, "35001", 1205, 2_000, 7, 50, 5, 2_002),
        TickEntry(1, "3045", 80520, 3_000, 2, None, None, 3_003),
        TickEntry(1, "odd,token", 100, 4_000, 1, None, None, 4_004),  # any text as token
    ]

    writer._write(batch)

    nse = [f for _id, f in redis_client.xrange(keys.TICKS_STREAM.format(exchange_type=1))]
    nfo = [f for _id, f in redis_client.xrange(keys.TICKS_STREAM.format(exchange_type=2))]
    assert [(f["tk"], f["ltp"], f["seq"]) for f in nse] == [
        ("3045", "80515", "1"), ("3045", "80520", "2"), ("odd,token", "100", "1")]
    assert nfo == [{"tk": "35001", "ex": "2", "ltp": "1205", "ts": "2000", "seq": "7",
                    "vol": "50", "ltq": "5", "rx": "2002"}]
    assert redis_client.hgetall(keys.LAST_PRICE) == {
        "1:3045": "80520", "2:35001": "1205", "1:odd,token": "100"}
    assert redis_client.hget(keys.LAST_TICK_AT, "1:3045") == "3000"
    assert writer.written == 4
    writer.stop()


def test_a_batch_redis_rejects_is_dropped_counted_and_the_ticks_behind_it_flow(redis_client,
                                                                                caplog):
    redis_client.set(keys.TICKS_STREAM.format(exchange_type=1), "not a stream")
    writer = TickWriter(fast_redis)
    writer.put(TickEntry(2, "35001", 1205, 1_000, 1, 50, 5, 1_001))  # one batch: both in
    writer.put(TickEntry(1, "3045", 80515, 2_000, 1, None, None, 2_001))  # before the start

    writer.start()
    wait_for(lambda: writer.dropped == 2, 3, "the rejected batch dropped")
    redis_client.delete(keys.TICKS_STREAM.format(exchange_type=1))
    writer.put(TickEntry(1, "3045", 80520, 3_000, 2, None, None, 3_001))
    wait_for(lambda: writer.written == 1, 3, "the next tick written")
    writer.stop()

    nse = redis_client.xrange(keys.TICKS_STREAM.format(exchange_type=1))
    nfo = redis_client.xrange(keys.TICKS_STREAM.format(exchange_type=2))
    assert [f["ltp"] for _id, f in nse] == ["80520"]
    assert len(nfo) <= 1  # written at most once, never again by a retry
    assert writer.redis_ok and "WRONGTYPE" in writer.last_error
    lines = [r.getMessage() for r in caplog.records if r.name == "feeds.writer"]
    assert any(m.startswith("Redis rejected a batch of 2 ticks; dropped: ResponseError")
               for m in lines)
    assert not any("Redis unreachable" in m for m in lines)
