"""`manage.py run_engine` as the process manager runs it: a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from feeds.models import Instrument
from strategies.candles import MINUTE_MS
from strategies.models import Candle, StrategyConfig
from strategies.testing import ensure_watchlist, next_minute_ms, xadd_ticks
from tests.conftest import subprocess_env
from tradebot import keys

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_engine_bootstraps_builds_candles_and_stops_cleanly(
    redis_client, simulator, transactional_db
):
    ensure_watchlist()
    Instrument.objects.exclude(token__in=["2885", "11536"]).update(on_watchlist=False)
    StrategyConfig.objects.update_or_create(
        name="ema-crossover-demo",
        defaults={"kind": "ema_crossover", "params": {"fast": 3, "slow": 8}, "enabled": True})
    redis_client.hset(keys.FEED_STATE, "state", "CONNECTED")
    env = subprocess_env(simulator, LOG_LEVEL="WARNING")
    engine = subprocess.Popen([sys.executable, "manage.py", "run_engine"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: redis_client.hget(keys.ENGINE_STATE, "state") == "RUNNING", 30,
                 "the engine to run")
        t0 = next_minute_ms()
        ticks = [(token, t0 + i * 10_000 + 300, 128500 + 5 * i, 1000 + 10 * i, i + 1)
                 for i in range(13) for token in ("2885", "11536")]
        xadd_ticks(redis_client, ticks)
        wait_for(lambda: Candle.objects.filter(source="live").count() >= 4, 15,
                 "live candles in the database")

        engine.send_signal(signal.SIGTERM)
        output, _ = engine.communicate(timeout=15)
    finally:
        if engine.poll() is None:
            engine.kill()

    assert engine.returncode == 0, output
    assert "history [##############################]   2/2 loaded 2, warming up 0" in output
    assert "historical candles: 2/2 loaded, 0 warming up" in output
    assert "engine: stopped" in output
    assert redis_client.hget(keys.ENGINE_STATE, "state") == "STOPPED"
    live = Candle.objects.filter(instrument__token="2885", source="live").order_by("start")
    assert [round(c.start.timestamp() * 1000) for c in live[:2]] == [t0, t0 + MINUTE_MS]
    assert Candle.objects.filter(source="historical").count() == 400
