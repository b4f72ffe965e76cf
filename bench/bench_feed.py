"""Feed benchmark: ingest throughput and latency, and recovery drills.

    .venv/bin/python bench/bench_feed.py [--quick] [--drills N] [--rate TICKS_PER_S]

Three processes, as in production: a Redis server, the simulator (``python -m
simulator``) and one feed process (this file with ``--child``, which runs the same
FeedWorker as ``manage.py run_feed``). This process only measures, through Redis and
the simulator's control endpoint, so it never competes with the feed for a GIL.

Figures:
- ingest: ticks XADDed per second while the simulator offers ``--rate``; latency from the
  packet's exchange timestamp (``ts``, set by the simulator when it generates the tick)
  to the XADD, read from the stream entry id (the Redis server's clock at insertion, in
  ms, so every figure carries +-1 ms of rounding); peak RSS of the feed process.
- restart drills: the simulator restarts (down ``--down`` s); time from the moment its
  port accepts again to the first new entry in the stream.
- stall drills: the simulator stops sending (socket open, pings answered); once the
  feed's watchdog has closed the stalled socket the stall is cleared (as a reconnect
  clears a stalled server session); time from the last tick before the stall to the first
  tick after it. Run with a short watchdog for many drills, and a few with the default
  15 s one.

Results go to bench/results/feed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STREAM = "tb:ticks:1"
PYTHON = sys.executable


# --- the feed process ---------------------------------------------------------------


def run_child(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    import django

    django.setup()
    from feeds.backoff import BackoffPolicy
    from feeds.config import FeedConfig
    from feeds.credentials import SessionCredentials
    from feeds.testing import WATCHLIST
    from feeds.worker import FeedWorker

    config = FeedConfig.from_settings(
        url=args.ws_url,
        watchdog_seconds=args.watchdog,
        backoff=BackoffPolicy(healthy_seconds=args.healthy),
    )
    worker = FeedWorker(config, SessionCredentials(), watchlist=lambda: set(WATCHLIST))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: worker.request_stop("bench"))
    worker.run()


# --- helpers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, what: str, every: float = 0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "worst": round(max(values), 3),
        "best": round(min(values), 3),
    }


class Simulator:
    def __init__(self, tick_rate: float, workdir: Path) -> None:
        self.port = free_port()
        self.log = open(workdir / f"simulator-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PYTHON, "-m", "simulator", "--port", str(self.port), "--tick-rate",
             str(tick_rate), "--no-rate-limits"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: accepting(self.port), 20, "the simulator", every=0.05)
        self.rest_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/smart-stream"

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.rest_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def fault(self, name: str, **params) -> dict:
        return self._post("/_sim/faults", {"fault": name, **params})

    def stats(self) -> dict:
        with urllib.request.urlopen(self.rest_url + "/_sim/stats", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Feed:
    def __init__(self, sim: Simulator, redis_url: str, workdir: Path, watchdog: float,
                 healthy: float) -> None:
        env = dict(os.environ)
        env.update({
            "REDIS_URL": redis_url,
            "ANGEL_REST_URL": sim.rest_url,
            "ANGEL_WS_URL": sim.ws_url,
            "SIMULATOR_PORT": str(sim.port),
            "TRADEBOT_VAR_DIR": str(workdir),
            "TRADEBOT_SQLITE_PATH": str(workdir / "bench.sqlite3"),
            "FEED_STREAM_MAXLEN": "20000000",
            "LOG_LEVEL": "INFO",
        })
        self.log_path = workdir / f"feed-{sim.port}-{watchdog}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PYTHON, __file__, "--child", "--ws-url", sim.ws_url, "--watchdog", str(watchdog),
             "--healthy", str(healthy)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 1e6

    def stop(self) -> float:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        return time.monotonic() - started


# --- ingest -------------------------------------------------------------------------


def ingest_run(redis_client, redis_url: str, workdir: Path, rate: float, seconds: float,
               warmup: float) -> dict:
    import psutil

    sim = Simulator(rate / 50, workdir)
    feed = Feed(sim, redis_url, workdir, watchdog=15.0, healthy=30.0)
    try:
        wait_until(lambda: redis_client.xlen(STREAM) > 0, 30, "first ticks", every=0.05)
        time.sleep(warmup)
        proc = psutil.Process(feed.process.pid)
        proc.cpu_percent(None)
        sim_proc = psutil.Process(sim.process.pid)
        sim_proc.cpu_percent(None)
        s0, n0, t0 = sim.stats(), redis_client.xlen(STREAM), time.time()
        peak_rss = 0.0
        while time.time() - t0 < seconds:
            time.sleep(0.25)
            peak_rss = max(peak_rss, feed.rss_mb())
        s1, n1, t1 = sim.stats(), redis_client.xlen(STREAM), time.time()
        cpu = proc.cpu_percent(None)
        sim_cpu = sim_proc.cpu_percent(None)
        entries = redis_client.xrange(STREAM, min=int(t0 * 1000), max=int(t1 * 1000))
    finally:
        feed.stop()
        sim.stop()
    step = max(1, len(entries) // 200_000)
    sample = entries[::step]
    latencies = [id_ms(i) - int(f["ts"]) for i, f in sample]
    to_feed = [int(f["rx"]) - int(f["ts"]) for _i, f in sample]  # simulator + socket
    in_feed = [id_ms(i) - int(f["rx"]) for i, f in sample]  # decode, queue, XADD
    elapsed = t1 - t0
    redis_client.delete(STREAM)
    return {
        "offered_ticks_per_s": round((s1["frames_sent"] - s0["frames_sent"]) / elapsed),
        "ingested_ticks_per_s": round((n1 - n0) / elapsed),
        "simulator_dropped": s1["frames_dropped"] - s0["frames_dropped"],
        "latency_ms_p50": pct(latencies, 0.50),
        "latency_ms_p99": pct(latencies, 0.99),
        "latency_ms_max": max(latencies),
        "exchange_ts_to_receive_ms_p50": pct(to_feed, 0.50),
        "exchange_ts_to_receive_ms_p99": pct(to_feed, 0.99),
        "receive_to_xadd_ms_p50": pct(in_feed, 0.50),
        "receive_to_xadd_ms_p99": pct(in_feed, 0.99),
        "simulator_cpu_percent": round(sim_cpu),
        "peak_rss_mb": round(peak_rss, 1),
        "feed_cpu_percent": round(cpu),
        "seconds": round(elapsed, 1),
    }


# --- recovery drills ----------------------------------------------------------------


def first_entry_after(redis_client, moment_ms: int, timeout: float = 60.0) -> int:
    def probe():
        found = redis_client.xrange(STREAM, min=moment_ms, count=1)
        return found and id_ms(found[0][0])

    return wait_until(probe, timeout, "a tick after the fault", every=0.001)


def restart_drills(redis_client, redis_url: str, workdir: Path, drills: int, down: float,
                   healthy: float) -> list[float]:
    sim = Simulator(10.0, workdir)  # 500 ticks/s: a tick every 2 ms on average
    feed = Feed(sim, redis_url, workdir, watchdog=15.0, healthy=healthy)
    results = []
    try:
        wait_until(lambda: redis_client.xlen(STREAM) > 0, 30, "first ticks", every=0.05)
        for _ in range(drills):
            time.sleep(healthy + 0.5)  # a healthy connection, as before any real incident
            sim.fault("restart", down_seconds=down)
            wait_until(lambda: not accepting(sim.port), 5, "the server going down")
            wait_until(lambda: accepting(sim.port), down + 10, "the server back", every=0.001)
            back_ms = int(time.time() * 1000)
            first = first_entry_after(redis_client, back_ms)
            results.append((first - back_ms) / 1000)
    finally:
        feed.stop()
        sim.stop()
    return results


def stall_drills(redis_client, redis_url: str, workdir: Path, drills: int, watchdog: float,
                 healthy: float) -> list[float]:
    sim = Simulator(10.0, workdir)
    feed = Feed(sim, redis_url, workdir, watchdog=watchdog, healthy=healthy)
    results = []
    try:
        wait_until(lambda: redis_client.xlen(STREAM) > 0, 30, "first ticks", every=0.05)
        for _ in range(drills):
            time.sleep(healthy + 0.5)
            sim.fault("stall", seconds=600)
            wait_until(lambda: sim.stats()["ws_connections"] == 0, watchdog + 30,
                       "the watchdog closing the stalled socket", every=0.02)
            cleared_ms = int(time.time() * 1000)
            sim.fault("clear")
            last = redis_client.xrevrange(STREAM, max=cleared_ms, count=1)
            first = first_entry_after(redis_client, cleared_ms)
            results.append((first - id_ms(last[0][0])) / 1000)
    finally:
        feed.stop()
        sim.stop()
    return results


# --- main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (~1 min)")
    parser.add_argument("--rate", type=float, default=20_000, help="offered ticks/s")
    parser.add_argument("--drills", type=int, default=None, help="drills of each kind")
    parser.add_argument("--down", type=float, default=1.0, help="restart downtime, s")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "feed.json"))
    parser.add_argument("--only", choices=("ingest", "restart", "stall"), default=None,
                        help="run one part only (results are not written)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--watchdog", type=float, default=15.0, help=argparse.SUPPRESS)
    parser.add_argument("--healthy", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    import redis

    from tradebot.embedded_redis import EmbeddedRedis

    quick = args.quick
    runs, seconds = (1, 5.0) if quick else (3, 8.0)
    drills = args.drills or (5 if quick else 20)
    long_drills = 1 if quick else drills
    healthy = 2.0
    workdir = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    server = EmbeddedRedis(workdir / "redis").start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    started = time.monotonic()
    if args.only:
        try:
            only(args.only, client, server.url, workdir, args, seconds, drills, healthy)
        finally:
            client.close()
            server.stop()
        return
    try:
        ingest = [ingest_run(client, server.url, workdir, args.rate, seconds, 2.0)
                  for _ in range(runs)]
        for run in ingest:
            print("ingest run:", run, flush=True)
        capacity = ingest_run(client, server.url, workdir, args.rate * 2, seconds, 2.0)
        print("capacity run:", capacity, flush=True)
        restart = restart_drills(client, server.url, workdir, drills, args.down, healthy)
        print("restart drills (s):", restart, flush=True)
        stall_short = stall_drills(client, server.url, workdir, drills, 2.0, healthy)
        print("stall drills, watchdog 2 s (s):", stall_short, flush=True)
        stall_default = stall_drills(client, server.url, workdir, long_drills, 15.0, healthy)
        print("stall drills, watchdog 15 s (s):", stall_default, flush=True)
    finally:
        client.close()
        server.stop()

    def median_of(key: str) -> float:
        return statistics.median(run[key] for run in ingest)

    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if quick else "full",
        "ingest": {
            "runs": ingest,
            "offered_ticks_per_s": median_of("offered_ticks_per_s"),
            "ingested_ticks_per_s": median_of("ingested_ticks_per_s"),
            "latency_ms_p50": median_of("latency_ms_p50"),
            "latency_ms_p99": median_of("latency_ms_p99"),
            "exchange_ts_to_receive_ms_p50": median_of("exchange_ts_to_receive_ms_p50"),
            "exchange_ts_to_receive_ms_p99": median_of("exchange_ts_to_receive_ms_p99"),
            "receive_to_xadd_ms_p50": median_of("receive_to_xadd_ms_p50"),
            "receive_to_xadd_ms_p99": median_of("receive_to_xadd_ms_p99"),
            "peak_rss_mb": median_of("peak_rss_mb"),
            "target": "20000 ticks/s, p99 < 10 ms, RSS < 80 MB",
        },
        "capacity_run": capacity,
        "restart_recovery_s": {**summary(restart), "down_seconds": args.down,
                               "target": "median < 1.5 s"},
        "stall_recovery_s": {
            "watchdog_2s": summary(stall_short),
            "watchdog_15s_default": summary(stall_default),
            "target": "< 20 s with the default watchdog",
        },
        "notes": [
            f"three processes: redis-server, simulator, one feed process; one host with "
            f"{os.cpu_count()} CPUs, shared with other work",
            "the simulator stamps ticks at the start of each engine step and writes the "
            "step's frames at its end; at this rate a step is 2 ms (about 40 ticks; 20 ms "
            "at low rates), so its bursts are part of the latency",
            "latency from the simulator's exchange timestamp to the Redis entry id (ms)",
            f"backoff counter reset after {healthy} s healthy in the drills (default 30 s)",
        ],
        "bench_seconds": round(time.monotonic() - started),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten to {out}")


def only(part, client, url, workdir, args, seconds, drills, healthy) -> None:
    if part == "ingest":
        print(ingest_run(client, url, workdir, args.rate, seconds, 2.0))
    elif part == "restart":
        print(summary(restart_drills(client, url, workdir, drills, args.down, healthy)))
    else:
        print(summary(stall_drills(client, url, workdir, drills, 2.0, healthy)))


def print_table(r: dict) -> None:
    i, rs, st = r["ingest"], r["restart_recovery_s"], r["stall_recovery_s"]
    print("\nfeed benchmark (" + r["mode"] + ")")
    print(f"  ingest      offered {i['offered_ticks_per_s']:>7,} ticks/s   "
          f"ingested {i['ingested_ticks_per_s']:>7,} ticks/s")
    print(f"              latency p50 {i['latency_ms_p50']} ms  p99 {i['latency_ms_p99']} ms   "
          f"RSS {i['peak_rss_mb']} MB")
    print(f"              of which receive->XADD p50 {i['receive_to_xadd_ms_p50']} ms  "
          f"p99 {i['receive_to_xadd_ms_p99']} ms")
    c = r["capacity_run"]
    print(f"  capacity    offered {c['offered_ticks_per_s']:>7,} ticks/s   "
          f"ingested {c['ingested_ticks_per_s']:>7,} ticks/s  p99 {c['latency_ms_p99']} ms")
    print(f"  restart     median {rs['median']} s  worst {rs['worst']} s  (n={rs['n']}, "
          f"down {rs['down_seconds']} s)")
    for name, label in (("watchdog_2s", "watchdog 2 s"), ("watchdog_15s_default",
                                                           "watchdog 15 s")):
        s = st[name]
        print(f"  stall       {label:<14} median {s['median']} s  worst {s['worst']} s "
              f"(n={s['n']})")


if __name__ == "__main__":
    main()
