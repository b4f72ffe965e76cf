"""Benchmark the order path: signal -> broker-accepted latency, and throughput under the
shared rate limiter, through real Celery workers against the simulator.

    .venv/bin/python bench/bench_orders.py [--quick]

Everything runs on loopback in a scratch directory: a private Redis, a SQLite database,
the simulator process (with its rate limits on), and two Celery worker processes (-c 4 each,
prefork) sharing the one Redis limiter.

Latency: an intent is created (the "signal", timed just before ``create_intent``) at
4 per second, well inside the limiter's 6 per second; "accepted" is the moment the worker
recorded the broker's placeOrder answer (the ``accepted`` transition's timestamp).

Throughput: a burst of intents far larger than one second's budget is created at once.
The limiter admits its per-second allowance (L, the normal lane: 8/s less 2 kept for
exits and cancels) at once, then L per second as its window slides; the sustained rate
is (N - L) / (last accept - first accept), reported as a ratio to L. The busiest
1-second window of accepts must never hold more than L.

Each figure is the median over runs. Prints a table; writes bench/results/orders.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import django_with_private_redis, percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "orders.json"


def setup(work: Path):
    redis_server = django_with_private_redis(work)

    from django.conf import settings

    # The simulator in a process of its own, so that it never competes with this
    # process (which creates the signals) for the GIL.
    from orders.testing import wait_until
    from tradebot.embedded_redis import free_port

    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=open(work / "simulator.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: _listening(port), 20, 0.05, "the simulator")
    root, ws_root = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    urls = {
        "ANGEL_REST_URL": root,
        "ANGEL_WS_URL": ws_root + "/smart-stream",
        "ANGEL_ORDER_WS_URL": ws_root + "/smart-order-update",
    }
    for name, value in urls.items():
        setattr(settings, name, value)
    env = dict(os.environ, SIMULATOR_PORT=str(port), **urls)
    return redis_server, sim, env


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def transition_at(intent_ids: list[int], to: str, source: str) -> dict[int, float]:
    """When each intent first made the move source -> to (epoch seconds)."""
    from orders.models import OrderEvent

    rows = OrderEvent.objects.filter(
        intent_id__in=intent_ids, to_status=to, from_status=source
    ).order_by("at")
    found: dict[int, float] = {}
    for row in rows:
        found.setdefault(row.intent_id, row.at.timestamp())
    return found


def accepted_at(intent_ids: list[int]) -> dict[int, float]:
    return transition_at(intent_ids, "accepted", "submitting")


def wait_settled(ids: list[int], timeout: float) -> None:
    from orders.models import OrderIntent
    from orders.testing import wait_until

    done = ("accepted", "open", "complete", "rejected")
    wait_until(
        lambda: OrderIntent.objects.filter(pk__in=ids, status__in=done).count() == len(ids),
        timeout,
        0.05,
        f"{len(ids)} intents to settle",
    )


def signals(count: int, spacing: float, offset: int) -> dict[int, float]:
    from orders.intents import create_intent
    from orders.testing import instrument

    stocks = [instrument(i) for i in range(10)]
    started: dict[int, float] = {}
    for i in range(count):
        side = "BUY" if (offset + i) % 2 == 0 else "SELL"
        t0 = time.time()
        intent = create_intent(stocks[i % len(stocks)], side, 1, strategy="bench")
        started[intent.pk] = t0
        if spacing:
            time.sleep(spacing)
    return started


def latency_run(count: int, offset: int) -> dict:
    started = signals(count, 0.25, offset)
    wait_settled(list(started), 30)
    accepted = accepted_at(list(started))
    claimed = transition_at(list(started), "submitting", "new")
    ms = [(accepted[pk] - t0) * 1000 for pk, t0 in started.items() if pk in accepted]
    # Where the time goes: signal -> a worker claimed it, claimed -> broker answer stored.
    queue = [(claimed[pk] - t0) * 1000 for pk, t0 in started.items() if pk in claimed]
    send = [(accepted[pk] - claimed[pk]) * 1000 for pk in accepted if pk in claimed]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "to_claim_p50_ms": round(percentile(queue, 50), 2),
        "to_claim_p99_ms": round(percentile(queue, 99), 2),
        "claim_to_accept_p50_ms": round(percentile(send, 50), 2),
        "claim_to_accept_p99_ms": round(percentile(send, 99), 2),
    }


def throughput_run(count: int, per_second: int, offset: int) -> dict:
    time.sleep(1.2)  # let the limiter's one-second window empty
    began = time.time()
    started = signals(count, 0.0, offset)
    wait_settled(list(started), 60)
    times = sorted(accepted_at(list(started)).values())
    span = times[-1] - times[0]
    rate = (len(times) - per_second) / span
    # The limiter's own log of admitted order calls (Redis server clock, microseconds).
    from broker import factory
    from tradebot import keys

    log_key = keys.LIMIT.format(endpoint="orders", window="log")
    admitted = [
        score / 1e6
        for _, score in factory.get_redis().zrangebyscore(
            log_key, began * 1e6, "+inf", withscores=True
        )
    ]
    return {
        "n": len(times),
        "span_s": round(span, 3),
        "rate_per_s": round(rate, 3),
        "ratio": round(rate / per_second, 4),
        "busiest_1s_window_admitted": busiest_window(admitted),
        "busiest_1s_window_accepted": busiest_window(times),
        "largest_gap_between_admissions_s": round(
            max((b - a for a, b in zip(admitted, admitted[1:], strict=False)), default=0), 3
        ),
        "sends_put_back_to_wait": released(list(started)),
    }


def released(intent_ids: list[int]) -> int:
    """How many times a claim was given back to wait for the limiter outside the worker."""
    from orders.models import OrderEvent

    return OrderEvent.objects.filter(
        intent_id__in=intent_ids, to_status="new", from_status="submitting"
    ).count()


def busiest_window(times: list[float]) -> int:
    """The most events in any 1-second interval."""
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer orders, one run each")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    lat_count = 25 if args.quick else 60
    burst = 30 if args.quick else 60

    work = Path(tempfile.mkdtemp(prefix="bench-orders-"))
    redis_server, sim, env = setup(work)
    from broker.limiter import DEFAULT_LIMITS
    from orders.testing import Worker

    orders_window = DEFAULT_LIMITS["orders"][0]
    per_second = orders_window.limit - orders_window.reserve
    workers = [
        Worker(env, name=f"bench{i}", concurrency=4, log_path=work / f"w{i}.log") for i in range(2)
    ]
    try:
        for worker in workers:
            worker.start()
        wait_settled(list(signals(4, 0.1, 0)), 30)  # log in, warm the pools
        latency = [latency_run(lat_count, 100 * run) for run in range(runs)]
        throughput = [throughput_run(burst, per_second, 1000 + 100 * run) for run in range(runs)]
    finally:
        for worker in workers:
            worker.stop()
        sim.terminate()
        sim.wait(10)
        redis_server.stop()

    result = {
        "benchmark": "orders",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "workers": "2 processes x 4 prefork children",
        "limiter_orders_per_second_normal_lane": per_second,
        "latency_ms": {
            "p50": round(statistics.median(r["p50_ms"] for r in latency), 2),
            "p99": round(statistics.median(r["p99_ms"] for r in latency), 2),
            "target_p99": 50,
            "runs": latency,
        },
        "throughput": {
            "ratio": statistics.median(r["ratio"] for r in throughput),
            "rate_per_s": statistics.median(r["rate_per_s"] for r in throughput),
            "busiest_1s_window_admitted": max(r["busiest_1s_window_admitted"] for r in throughput),
            "busiest_1s_window_accepted": max(r["busiest_1s_window_accepted"] for r in throughput),
            "target_ratio": [0.95, 1.0],
            "runs": throughput,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    lat, thr = result["latency_ms"], result["throughput"]
    print(
        f"signal -> accepted latency   p50 {lat['p50']:7.2f} ms   p99 {lat['p99']:7.2f} ms"
        f"   (target p99 < 50 ms; median of {runs} runs of {lat_count})"
    )
    print(
        f"throughput under the limiter {thr['rate_per_s']:7.3f} /s   ratio "
        f"{thr['ratio']:.4f} of {per_second}/s (target 0.95-1.0, never above)"
    )
    print(
        f"busiest 1 s window: {thr['busiest_1s_window_admitted']} admitted by the limiter, "
        f"{thr['busiest_1s_window_accepted']} answers recorded (network jitter)"
    )
    print(f"written to {RESULTS.relative_to(ROOT)}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
