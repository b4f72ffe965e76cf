"""What the benchmarks share: percentiles, and a private Redis plus a migrated database."""

from __future__ import annotations

import os
from pathlib import Path


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def django_with_private_redis(work: Path):
    """Start a Redis of the benchmark's own, point Django at it and at a fresh SQLite
    file under ``work``, migrate, and return the Redis server (the caller stops it)."""
    from tradebot.embedded_redis import EmbeddedRedis

    redis_server = EmbeddedRedis(work / "redis").start()
    os.environ.update(
        REDIS_URL=redis_server.url,
        TRADEBOT_VAR_DIR=str(work),
        TRADEBOT_SQLITE_PATH=str(work / "bench.sqlite3"),
        DJANGO_SETTINGS_MODULE="tradebot.settings",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return redis_server
