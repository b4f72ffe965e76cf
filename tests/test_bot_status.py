"""`manage.py bot_status`: the start-up summary, and the same facts as one JSON object."""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import call_command

from tradebot import keys

pytestmark = pytest.mark.django_db

REQUIRED = ("websocket", "symbols_subscribed", "symbols_flowing", "historical_candles_loaded",
            "token_age_seconds", "kill_switch", "orders_today", "health")


def _running_bot(redis_client) -> None:
    now = time.time()
    redis_client.hset(keys.FEED_STATE, mapping={
        "state": "CONNECTED", "subscribed": 50, "flowing": 48, "last_tick_at": now,
        "updated_at": now, "reconnects_today": 2,
    })
    redis_client.hset(keys.BOOTSTRAP_STATE, mapping={"loaded": 37, "warming_up": 13,
                                                     "total": 50})
    redis_client.hset(keys.SESSION.format(client_code="S0001"), mapping={
        "issued_at": now - 3725, "expires_at": now + 3600})


def test_json_has_every_key_the_dashboard_needs(redis_client, capsys):
    _running_bot(redis_client)

    call_command("bot_status", "--json")

    status = json.loads(capsys.readouterr().out)
    assert set(REQUIRED) <= set(status)
    assert (status["websocket"], status["symbols_flowing"]) == ("CONNECTED", 48)
    assert status["historical_candles_loaded"] == 37
    assert 3724 <= status["token_age_seconds"] <= 3727
    assert status["kill_switch"] == "off"


def test_the_summary_reads_like_a_terminal(redis_client, capsys):
    _running_bot(redis_client)

    call_command("bot_status")

    out = capsys.readouterr().out
    assert "historical candles     37/50 loaded, 13 warming up" in out
    assert "symbols with prices    48/50" in out
    assert "session token age      1h 02m 05s" in out


def test_it_still_prints_when_redis_is_down(settings, capsys):
    from broker import factory

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    factory.reset()
    try:
        call_command("bot_status", "--json")
    finally:
        factory.reset()

    status = json.loads(capsys.readouterr().out)
    assert status["redis"].startswith("down")
    assert status["websocket"] == "UNKNOWN"


def test_a_connected_feed_without_recent_ticks_is_shown_as_stale(redis_client, capsys):
    _running_bot(redis_client)
    redis_client.hset(keys.FEED_STATE, "last_tick_at", time.time() - 18)

    call_command("bot_status", "--json")

    status = json.loads(capsys.readouterr().out)
    assert status["websocket"] == "CONNECTED, no tick for 18 s"
    assert status["symbols_flowing"] == 0


def test_a_feed_process_that_stopped_reporting_is_shown_as_not_running(redis_client, capsys):
    _running_bot(redis_client)
    redis_client.hset(keys.FEED_STATE, "updated_at", time.time() - 95)

    call_command("bot_status", "--json")

    status = json.loads(capsys.readouterr().out)
    assert status["websocket"].startswith("NOT RUNNING (last report 95 s ago")
    assert status["symbols_flowing"] == 0


def test_a_missing_holiday_calendar_for_this_year_is_shown(redis_client, capsys, monkeypatch):
    from datetime import datetime

    from tradebot.market_hours import IST

    _running_bot(redis_client)
    monkeypatch.setattr("tradebot.status.now_ist", lambda: datetime(2027, 1, 4, 10, tzinfo=IST))

    call_command("bot_status")

    assert "holidays: MISSING for 2027: set NSE_HOLIDAYS_FILE" in capsys.readouterr().out
