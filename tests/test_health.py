"""The 60-second health check: feed, Redis, database, workers, session."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from health import checks
from health.models import HealthCheck
from health.schedules import SCHEDULES
from tradebot import keys

pytestmark = pytest.mark.django_db


def _feed_state(redis_client, **fields):
    now = time.time()
    base = {"state": "CONNECTED", "updated_at": now, "last_tick_at": now,
            "subscribed": 50, "flowing": 50}
    base.update(fields)
    redis_client.hset(keys.FEED_STATE, mapping=base)


def test_a_flowing_feed_is_ok(redis_client):
    _feed_state(redis_client)

    assert checks.check_feed(redis_client)[0] == "ok"


def test_a_feed_without_ticks_for_a_minute_is_down(redis_client):
    _feed_state(redis_client, last_tick_at=time.time() - 90)

    status, detail = checks.check_feed(redis_client)

    assert status == "down"
    assert "no tick for 90 s" in detail


def test_a_feed_process_that_stopped_reporting_is_down(redis_client):
    _feed_state(redis_client, updated_at=time.time() - 120)

    status, detail = checks.check_feed(redis_client)

    assert (status, "process dead?" in detail) == ("down", True)


def test_a_silent_feed_is_no_alarm_when_the_market_is_closed(redis_client, settings):
    settings.MARKET_ALWAYS_OPEN = False
    _feed_state(redis_client, last_tick_at=0, updated_at=0)

    status, _ = checks.check_feed(redis_client, now=time.time())

    from tradebot.market_hours import is_market_open, now_ist

    expected = "down" if is_market_open(now_ist()) else "market closed"
    assert status == expected


def test_redis_down_is_reported_not_raised():
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)

    status, detail = checks.check_redis(dead)

    assert status == "down"
    assert "ConnectionError" in detail


def test_the_task_records_a_row_and_asks_a_dead_feed_to_reconnect(redis_client):
    from health.tasks import health_check

    _feed_state(redis_client, last_tick_at=time.time() - 300)

    summary = health_check.run()

    row = HealthCheck.objects.get()
    assert row.feed == "down" and row.overall == "down"
    assert row.workers == "down"  # no Celery worker runs in this test
    assert "asked the feed to reconnect" in row.actions
    command = redis_client.xrange(keys.FEED_COMMANDS)[-1][1]
    assert command["cmd"] == "reconnect"
    assert json.loads(redis_client.get(keys.HEALTH_LAST))["overall"] == summary["overall"]


def test_a_second_run_in_the_same_window_does_nothing(redis_client):
    from health.tasks import health_check

    _feed_state(redis_client)
    health_check.run()
    second = health_check.run()

    assert second == {"skipped": "already ran in this window"}
    assert HealthCheck.objects.count() == 1


def test_migrate_installs_the_60_second_schedules():
    from django_celery_beat.models import PeriodicTask

    tasks = {task.name: task for task in PeriodicTask.objects.exclude(name__startswith="celery")}

    for name, task_name, seconds, queue in SCHEDULES:
        assert tasks[name].task == task_name
        assert tasks[name].interval.every == seconds
        assert tasks[name].queue == queue
        assert tasks[name].expire_seconds == seconds - 10


def test_settings_use_exchange_time():
    assert settings.TIME_ZONE == settings.CELERY_TIMEZONE == "Asia/Kolkata"
    assert settings.USE_TZ


def test_a_year_without_an_nse_holiday_list_raises_an_alert(redis_client, monkeypatch):
    from datetime import datetime

    from health.tasks import health_check
    from tradebot.market_hours import IST
    from tradebot.models import Activity

    monkeypatch.setattr("health.tasks.now_ist", lambda: datetime(2027, 1, 4, 10, tzinfo=IST))
    _feed_state(redis_client)

    health_check.run()

    alert = Activity.objects.get(component="calendar")
    assert alert.level == "error"
    assert "no NSE holiday list for 2027" in alert.message

