"""Benchmark the strategy engine: tick throughput into candles, tick-to-signal latency, and
the historical bootstrap of 50 symbols against the simulator's real rate limits.

    .venv/bin/python bench/bench_engine.py [--quick]

Everything runs on loopback in a scratch directory: a private Redis, a SQLite database
and the simulator (rate limits on).

Throughput: N ticks for the 50 watchlist symbols (about 100 a minute each, an hour of
exchange time) are written to the tick stream first; then the engine consumes them the
way it runs - XREADGROUP COUNT 1000, parse, one-minute candles, XACK, candles stored in
SQLite and Redis, delivered in order - in one thread (one core; Redis
runs in its own process). No strategy runs here (signals are rare and timed below).
Figure: ticks / wall second.

Latency: a separate producer process writes ticks for the 50 symbols in real time, with
exchange time running 600x faster than the wall clock (a minute every 0.1 s), so each
symbol's candle closes on its first tick of the next minute. Latency is from that tick's
XADD (a wall-clock stamp in the entry) to the signal leaving the risk gate (its activity
line written; order intents are not created, positions read as flat). A strategy signals
on 5 of the 50 symbols each minute; a second figure has all 50 signal on the same tick,
where the last waits for the 49 before it.

Bootstrap: 200 one-minute candles for each of the 50 watchlist symbols through
getCandleData (one request per symbol), the shared limiter and the simulator's sliding
windows of 3/s and 180/min. The theoretical minimum for 50 requests under 3 per second is
16 s (3 at t = 0, 3 at t = 1 s, ..., the 50th at t = 16 s); the figure is the ratio.

Each figure is the median over runs. Prints a table; writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import django_with_private_redis, percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "engine.json"
MINUTE_MS = 60_000


def setup(work: Path):
    return django_with_private_redis(work)


def tokens() -> list[str]:
    from broker.watchlist import DEFAULT_WATCHLIST

    return [token for _symbol, token, _ref in DEFAULT_WATCHLIST]


def fresh_engine(redis_client, consumer: str, **kw):
    from strategies.engine import Engine
    from strategies.risk import RiskGate, RiskLimits

    redis_client.flushall()
    redis_client.hset("tb:feed:state", "state", "CONNECTED")
    kw.setdefault("positions", lambda instrument: 0)
    kw.setdefault("create_intent", lambda *a, **k: None)
    risk = RiskGate(redis_client, RiskLimits(always_open=True, max_orders_per_minute=10**9,
                                             max_order_value_rupees=10**12,
                                             max_position_value_rupees=10**12,
                                             max_position_qty=10**9))
    engine = Engine(redis_client=redis_client, fetch=lambda *a: [], consumer=consumer,
                    risk=risk, **kw)
    engine.start(bootstrap=False)
    return engine


# --- throughput ------------------------------------------------------------------------


def write_ticks(redis_client, count: int, start_ms: int) -> None:
    from tradebot import keys

    stream = keys.TICKS_STREAM.format(exchange_type=1)
    names = tokens()
    step = 60_000 // 100 // len(names)  # ms between ticks: 100 a minute per symbol
    pipe = redis_client.pipeline(transaction=False)
    for i in range(count):
        token = names[i % len(names)]
        n = i // len(names)
        pipe.execute_command(
            "XADD", stream, "*", "tk", token, "ex", 1, "ltp", 100_000 + 5 * ((n * 7) % 23),
            "ts", start_ms + i * step, "seq", n + 1, "vol", 1000 + 37 * n,
            "ltq", 37, "rx", start_ms,
        )
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()


def throughput_run(redis_client, count: int) -> dict:
    from strategies.models import Candle, StrategyConfig

    Candle.objects.all().delete()
    StrategyConfig.objects.update(enabled=False)  # candles only: signals are timed below
    engine = fresh_engine(redis_client, "bench-throughput")
    start_ms = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS + MINUTE_MS
    write_ticks(redis_client, count, start_ms)

    started = time.perf_counter()
    cpu = time.process_time()
    while engine.stats["ticks"] < count:
        engine.step()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    engine.stop()
    return {
        "ticks": engine.stats["ticks"],
        "seconds": elapsed,
        "ticks_per_second": count / elapsed,
        "cpu_ticks_per_second": count / cpu,
        "candles": engine.stats["candles"],
    }


# --- latency ---------------------------------------------------------------------------


def produce(url: str, names: list[str], minutes: int, start_ms: int, speed: float) -> None:
    """Producer process: ticks in real time, exchange time ``speed`` times faster."""
    import redis

    client = redis.Redis.from_url(url)
    per_minute = 6
    wall_per_minute = 60.0 / speed
    began = time.time()
    for minute in range(minutes):
        for k in range(per_minute):
            target = began + (minute + k / per_minute) * wall_per_minute
            pause = target - time.time()
            if pause > 0:
                time.sleep(pause)
            ts = start_ms + minute * MINUTE_MS + k * (MINUTE_MS // per_minute)
            pipe = client.pipeline(transaction=False)
            for n, token in enumerate(names):
                pipe.execute_command(
                    "XADD", "tb:ticks:1", "*", "tk", token, "ex", 1,
                    "ltp", 100_000 + 5 * ((minute * 7 + k + n) % 13), "ts", ts,
                    "seq", minute * per_minute + k + 1, "vol", 1000 + minute * 60 + k * 10,
                    "ltq", 10, "rx", int(time.time() * 1000), "bx", f"{time.time():.6f}",
                )
            pipe.execute()


def latency_run(redis_client, url: str, minutes: int, one_in: int) -> dict:
    from feeds.models import Instrument
    from strategies.models import StrategyConfig

    config, _ = StrategyConfig.objects.update_or_create(
        name="bench-always", defaults={"kind": "recording", "enabled": True, "paused": False,
                                       "params": {"one_in": one_in}})
    config.instruments.set(Instrument.objects.filter(on_watchlist=True))
    import strategies.testing  # noqa: F401  (registers the recording strategy)

    closing_tick_at: dict[tuple[str, int], float] = {}
    latencies: list[float] = []

    def on_signal(candle, signal, decision):
        sent = closing_tick_at.get((candle.key, candle.end_ms))
        if sent is not None:
            latencies.append(time.time() - sent)

    engine = fresh_engine(redis_client, "bench-latency", on_signal=on_signal)
    consume = engine._consume

    def remembering(stream, entries):
        for _id, fields in entries:
            ts = int(fields["ts"])
            if ts % MINUTE_MS == 0:
                closing_tick_at[(f"{fields['ex']}:{fields['tk']}", ts)] = float(fields["bx"])
        return consume(stream, entries)

    engine._consume = remembering
    start_ms = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS + 10 * MINUTE_MS
    producer = multiprocessing.Process(target=produce,
                                       args=(url, tokens(), minutes + 1, start_ms, 600.0))
    producer.start()
    while producer.is_alive() or engine.reader.lag():
        engine.step()
    producer.join()
    engine.stop()
    StrategyConfig.objects.filter(name="bench-always").delete()
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


# --- bootstrap -------------------------------------------------------------------------


def theoretical_minimum(requests: int, per_second: int = 3) -> float:
    """Sliding 1 s window: ``per_second`` requests at t = 0, 1, 2 ... seconds."""
    return float(math.ceil(requests / per_second) - 1)


def bootstrap_run(redis_client) -> dict:
    from django.conf import settings

    from broker import factory
    from feeds.models import Instrument
    from simulator.testing import start_simulator
    from strategies.bootstrap import Bootstrap

    redis_client.flushall()  # a new simulator: the old session and limiter log are void
    sim = start_simulator()
    settings.ANGEL_REST_URL = sim.rest_url
    factory.reset()
    try:
        watchlist = list(Instrument.objects.filter(on_watchlist=True))
        fetch_ready = Bootstrap(redis_client=factory.get_redis(), count=200)
        factory.get_session().current()  # log in first: the login is not the bootstrap
        started = time.perf_counter()
        results = fetch_ready.run(watchlist)
        elapsed = time.perf_counter() - started
        stats = sim.stats()
    finally:
        sim.stop()
        factory.reset()
    loaded = sum(1 for r in results.values() if r.state == "loaded")
    minimum = theoretical_minimum(len(watchlist))
    return {
        "symbols": len(watchlist),
        "loaded": loaded,
        "seconds": elapsed,
        "theoretical_minimum_seconds": minimum,
        "ratio": elapsed / minimum,
        "rate_limited_403": stats["rate_limited"].get("getCandleData", 0),
        "calls": stats["route_calls"].get("getCandleData", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer ticks and runs")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    tick_count = 60_000 if args.quick else 300_000
    minutes = 10 if args.quick else 30

    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    redis_server = setup(work)
    try:
        from broker.factory import get_redis

        client = get_redis()
        through = [throughput_run(client, tick_count) for _ in range(runs)]
        latency = [latency_run(client, redis_server.url, minutes, 10) for _ in range(runs)]
        burst = [latency_run(client, redis_server.url, minutes // 2, 1) for _ in range(runs)]
        boot = [bootstrap_run(client) for _ in range(runs)]
    finally:
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(rows, field):
        return statistics.median(row[field] for row in rows)

    result = {
        "ticks_per_second": round(median(through, "ticks_per_second")),
        "cpu_ticks_per_second": round(median(through, "cpu_ticks_per_second")),
        "ticks_per_run": tick_count,
        "candles_per_run": through[0]["candles"],
        "tick_to_signal_p50_ms": round(median(latency, "p50_ms"), 2),
        "tick_to_signal_p99_ms": round(median(latency, "p99_ms"), 2),
        "latency_samples_per_run": latency[0]["samples"],
        "burst_of_50_signals_p50_ms": round(median(burst, "p50_ms"), 2),
        "burst_of_50_signals_p99_ms": round(median(burst, "p99_ms"), 2),
        "bootstrap_50_symbols_seconds": round(median(boot, "seconds"), 2),
        "bootstrap_theoretical_minimum_seconds": boot[0]["theoretical_minimum_seconds"],
        "bootstrap_ratio_to_minimum": round(median(boot, "ratio"), 3),
        "bootstrap_loaded": boot[0]["loaded"],
        "bootstrap_403s": sum(row["rate_limited_403"] for row in boot),
        "runs": runs,
        "targets": {"ticks_per_second": 20_000, "bootstrap_ratio_to_minimum": 1.2},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "raw": {"throughput": through, "latency": latency, "burst": burst, "bootstrap": boot},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"engine benchmark ({runs} run(s), medians)")
    print(f"  ticks into candles      {result['ticks_per_second']:>10,} /s   (target 20,000;"
          f" {result['cpu_ticks_per_second']:,} /s of engine CPU)")
    print(f"  tick to signal          p50 {result['tick_to_signal_p50_ms']:.2f} ms, "
          f"p99 {result['tick_to_signal_p99_ms']:.2f} ms (5 of 50 symbols signal a minute)")
    print(f"  ... all 50 at once      p50 {result['burst_of_50_signals_p50_ms']:.2f} ms, "
          f"p99 {result['burst_of_50_signals_p99_ms']:.2f} ms (signals are handled in turn)")
    minimum = boot[0]["theoretical_minimum_seconds"]
    print(f"  bootstrap 50 symbols    {result['bootstrap_50_symbols_seconds']:.2f} s = "
          f"{result['bootstrap_ratio_to_minimum']:.3f}x the {minimum:.0f} s minimum "
          f"(target 1.2x); 403s: {result['bootstrap_403s']}")
    print(f"  written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
