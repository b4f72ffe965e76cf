"""Shared fixtures: a private Redis server and the simulator, both started for real.

Nothing here touches a Redis or database the tests did not start themselves.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from tradebot.embedded_redis import EmbeddedRedis

_TMP = Path(tempfile.mkdtemp(prefix="tradebot-tests-"))
# Processes the tests start must not read a developer's .env (it may say live mode).
os.environ["TRADEBOT_DOTENV"] = "0"


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """One Redis for the session; every process the tests start inherits REDIS_URL."""
    server = EmbeddedRedis(_TMP / "redis").start()
    os.environ["REDIS_URL"] = server.url
    settings.REDIS_URL = server.url
    settings.CELERY_BROKER_URL = server.url
    from tradebot.celery import app

    app.conf.broker_url = server.url
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client on the session Redis, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    _reset_cached_redis()
    yield client
    client.close()


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def connection(redis_client):
    """The flushed session Redis, under the name the broker tests use."""
    return redis_client


def _reset_cached_redis() -> None:
    try:
        from broker import factory
    except ImportError:
        return
    reset = getattr(factory, "reset", None)
    if reset:
        reset()


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own, to kill and restart, with REDIS_URL pointing at it."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    old = settings.REDIS_URL
    settings.REDIS_URL = server.url
    _reset_cached_redis()
    yield server
    server.stop()
    settings.REDIS_URL = old
    _reset_cached_redis()


@pytest.fixture
def simulator():
    """The simulated Angel One on a random loopback port, with the bot pointed at it."""
    from simulator.testing import start_simulator

    running = start_simulator()
    saved = {
        name: getattr(settings, name)
        for name in ("ANGEL_REST_URL", "ANGEL_WS_URL", "ANGEL_ORDER_WS_URL", "SIMULATOR_PORT")
    }
    settings.ANGEL_REST_URL = running.rest_url
    settings.ANGEL_WS_URL = running.ws_url
    settings.ANGEL_ORDER_WS_URL = running.order_ws_url
    settings.SIMULATOR_PORT = running.port
    _reset_cached_redis()
    yield running
    running.stop()
    for name, value in saved.items():
        setattr(settings, name, value)
    _reset_cached_redis()


def subprocess_env(simulator=None, **extra: str) -> dict[str, str]:
    """Environment for a bot process started by a test (feed, engine, Celery worker)."""
    env = dict(os.environ)
    env["REDIS_URL"] = settings.REDIS_URL
    env["TRADEBOT_VAR_DIR"] = str(settings.VAR_DIR)
    db_name = settings.DATABASES["default"]["NAME"]
    env["TRADEBOT_SQLITE_PATH"] = str(db_name)
    if simulator is not None:
        env["ANGEL_REST_URL"] = simulator.rest_url
        env["ANGEL_WS_URL"] = simulator.ws_url
        env["ANGEL_ORDER_WS_URL"] = simulator.order_ws_url
        env["SIMULATOR_PORT"] = str(simulator.port)
    env.update(extra)
    return env
