"""The session token check (mechanism 4) against the real simulator: warn an hour ahead,
refresh, log in again by TOTP, and make no auth call while the market sleeps."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from health import checks
from health.tasks import token_check
from tradebot import keys
from tradebot.market_hours import IST, now_ist
from tradebot.models import Activity

pytestmark = pytest.mark.django_db

SATURDAY_NIGHT = datetime(2026, 12, 5, 2, 0, tzinfo=IST)


@pytest.fixture
def session(simulator, redis_client, settings):
    from broker.factory import get_session

    settings.MARKET_ALWAYS_OPEN = True
    session = get_session()
    session.daily_cutoff = None  # exact lifetimes, whatever the hour the test runs
    return session


def _ends_in(session, redis_client, seconds: float) -> None:
    """Make the bot's stored session end ``seconds`` from now (the broker's stays valid)."""
    key = keys.SESSION.format(client_code=session.client_code)
    redis_client.hset(key, "expires_at", time.time() + seconds)


def _profile_works(session) -> bool:
    return bool(session.call_with_session(lambda client: client.get_profile()))


def test_a_session_far_from_expiry_is_left_alone(session, simulator):
    jwt = session.current().jwt
    refreshes = simulator.stats()["token_refreshes"]

    result = token_check.run()

    assert result["session"] == "ok"
    assert session.current().jwt == jwt
    assert simulator.stats()["token_refreshes"] == refreshes


def test_it_warns_and_refreshes_a_session_that_ends_within_the_hour(
    session, simulator, redis_client
):
    old = session.current().jwt
    _ends_in(session, redis_client, 30 * 60)

    result = token_check.run()

    assert result["session"] == "refreshed"
    assert result["expires_in"] > 60 * 60
    assert session.current().jwt != old
    assert simulator.stats()["token_refreshes"] == 1
    warning = Activity.objects.get(component="session", level="warning")
    assert "expires in 30 min" in warning.message
    assert _profile_works(session)


def test_a_refresh_the_broker_refuses_becomes_a_totp_login(session, simulator, redis_client):
    session.current()
    simulator.fault("expire_sessions")
    _ends_in(session, redis_client, 10 * 60)
    logins = simulator.stats()["logins"]

    result = token_check.run()

    assert result["session"] == "refreshed"
    assert simulator.stats()["logins"] == logins + 1
    assert _profile_works(session)


def test_it_does_not_refresh_in_a_loop_before_the_daily_cutoff(session, simulator):
    session.daily_cutoff = (now_ist() + timedelta(minutes=20)).time()
    jwt = session.current().jwt

    first = token_check.run()
    second = token_check.run()

    assert first["session"] == second["session"] == "ends at the daily cut-off"
    assert session.current().jwt == jwt
    assert simulator.stats()["token_refreshes"] == 0
    assert Activity.objects.filter(component="session", level="warning").count() == 1


def test_with_no_session_it_logs_in_by_totp_while_the_market_is_open(session, simulator):
    assert session.expires_in() is None

    result = token_check.run()

    assert result["session"] == "logged in"
    assert session.expires_in() > 60 * 60
    assert simulator.stats()["logins"] == 1
    assert _profile_works(session)


def test_an_expired_session_is_replaced_by_a_login(session, simulator, redis_client):
    old = session.current().jwt
    _ends_in(session, redis_client, -5)

    result = token_check.run()

    assert result["session"] == "logged in"
    assert session.current().jwt != old


def test_at_night_there_is_no_auth_call_and_no_alarm(session, simulator, settings, monkeypatch):
    settings.MARKET_ALWAYS_OPEN = False
    monkeypatch.setattr("health.tasks.now_ist", lambda: SATURDAY_NIGHT)
    monkeypatch.setattr("health.checks.now_ist", lambda: SATURDAY_NIGHT)

    result = token_check.run()
    status, detail = checks.check_session(session)

    assert result == {"session": "not logged in", "market": "closed"}
    assert simulator.stats()["logins"] == 0
    assert status == "market closed", detail


def test_an_hour_before_the_open_it_logs_in(session, simulator, settings, monkeypatch):
    settings.MARKET_ALWAYS_OPEN = False
    before_open = datetime(2026, 12, 7, 8, 30, tzinfo=IST)  # a Monday
    monkeypatch.setattr("health.tasks.now_ist", lambda: before_open)

    result = token_check.run()

    assert result["session"] == "logged in"
    assert simulator.stats()["logins"] == 1
