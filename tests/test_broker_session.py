"""The shared broker session: one login for many threads and processes, secrets unlogged."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from datetime import datetime, timedelta

import pytest
import redis

from broker.errors import ConfigurationError, SessionExpiredError, TransientError
from broker.limiter import RateLimiter
from broker.rest import SmartApiClient
from broker.session import (
    DAILY_CUTOFF,
    BrokerSession,
    require_credentials,
    session_end,
    session_status,
)
from broker.testing import FakeAngel, Reply, envelope_a
from tradebot import keys
from tradebot.market_hours import IST


@pytest.fixture
def fake():
    with FakeAngel(login_delay=0.2) as server:
        yield server


def make_session(fake: FakeAngel, connection, **kw) -> BrokerSession:
    client = SmartApiClient(
        fake.url,
        fake.api_key,
        timeout=3.0,
        client_local_ip="127.0.0.1",
        client_public_ip="127.0.0.1",
        mac="00:00:00:00:00:00",
        limiter=kw.pop("limiter", None),
    )
    return BrokerSession(
        client,
        connection,
        fake.client_code,
        fake.pin,
        fake.totp_secret,
        kw.pop("lifetime_seconds", 3600.0),
        daily_cutoff=kw.pop("daily_cutoff", None),  # lifetimes exact whatever the hour
        **kw,
    )


def test_current_logs_in_once_and_then_reuses_the_stored_session(fake, connection):
    session = make_session(fake, connection)

    first = session.current()
    second = session.current()

    assert first == second
    assert fake.state.logins == 1
    stored = connection.hgetall(keys.SESSION.format(client_code=fake.client_code))
    assert stored["jwt"] == first.jwt and stored["feed_token"] == first.feed_token
    assert 3590 < session.expires_in() <= 3600
    assert 0 <= session.age_seconds() < 5
    status = session_status(connection, fake.client_code)
    assert status["logged_in"] is True and 3590 < status["expires_in"] <= 3600
    assert first.jwt not in str(status)


def test_a_second_process_object_reads_the_same_session_without_logging_in(fake, connection):
    make_session(fake, connection).current()

    tokens = make_session(fake, connection).current()

    assert fake.state.logins == 1
    assert tokens.jwt in fake.state.jwts


def test_concurrent_first_calls_from_threads_log_in_once(fake, connection):
    sessions = [make_session(fake, connection) for _ in range(6)]
    results: list = []
    start = threading.Barrier(len(sessions))

    def run(session: BrokerSession) -> None:
        start.wait()
        results.append(session.current().jwt)

    threads = [threading.Thread(target=run, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert fake.state.logins == 1
    assert len(set(results)) == 1 and len(results) == 6


def _current_in_child(
    fake_url, api_key, client_code, pin, secret, redis_url, start, out, stale_jwt=None
):
    client = SmartApiClient(
        fake_url,
        api_key,
        client_local_ip="127.0.0.1",
        client_public_ip="127.0.0.1",
        mac="00:00:00:00:00:00",
    )
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    session = BrokerSession(client, connection, client_code, pin, secret, 3600.0)
    start.wait()
    tokens = session.invalidate(stale_jwt) if stale_jwt else session.current()
    out.put(tokens.jwt)


def test_concurrent_first_calls_from_processes_log_in_once(fake, connection, redis_url):
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(4), context.Queue()
    args = (
        fake.url,
        fake.api_key,
        fake.client_code,
        fake.pin,
        fake.totp_secret,
        redis_url,
        start,
        out,
    )
    children = [context.Process(target=_current_in_child, args=args) for _ in range(4)]

    for child in children:
        child.start()
    jwts = [out.get(timeout=20) for _ in children]
    for child in children:
        child.join(10)

    assert fake.state.logins == 1
    assert len(set(jwts)) == 1


def test_reporters_in_several_processes_cause_one_refresh(fake, connection, redis_url):
    old = make_session(fake, connection).current()
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(4), context.Queue()
    args = (
        fake.url,
        fake.api_key,
        fake.client_code,
        fake.pin,
        fake.totp_secret,
        redis_url,
        start,
        out,
        old.jwt,
    )
    children = [context.Process(target=_current_in_child, args=args) for _ in range(4)]

    for child in children:
        child.start()
    jwts = [out.get(timeout=20) for _ in children]
    for child in children:
        child.join(10)

    assert fake.state.refreshes == 1 and fake.state.logins == 1
    assert len(set(jwts)) == 1 and jwts[0] != old.jwt


def test_many_reporters_of_one_expired_jwt_cause_one_refresh(fake, connection):
    session = make_session(fake, connection)
    old = session.current()
    start = threading.Barrier(8)
    renewed: list = []

    def report() -> None:
        start.wait()
        renewed.append(session.invalidate(old.jwt).jwt)

    threads = [threading.Thread(target=report) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert fake.state.refreshes == 1 and fake.state.logins == 1
    assert len(set(renewed)) == 1 and renewed[0] != old.jwt


def test_refresh_falls_back_to_a_full_login_when_the_refresh_token_is_refused(
    fake, connection, caplog
):
    session = make_session(fake, connection)
    session.current()
    fake.script("generateTokens", Reply(body=envelope_a(ok=False, code="AB8051")))

    with caplog.at_level(logging.WARNING):
        tokens = session.refresh()

    assert fake.state.logins == 2
    assert tokens.jwt in fake.state.jwts
    assert "refresh refused" in caplog.text and "AB8051" in caplog.text


def _ist(day: datetime, hour: int, minute: int = 0) -> float:
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


@pytest.mark.parametrize(
    "issued, expected",
    [
        ((15, 0), (1, 5, 0)),  # afternoon login: ends at tomorrow's 05:00 IST
        ((0, 30), (0, 5, 0)),  # after midnight: ends at today's 05:00
        ((5, 0), (1, 5, 0)),  # exactly at the cut-off: a whole day
    ],
)
def test_a_session_ends_at_the_next_daily_cutoff_in_ist(issued, expected):
    day = datetime(2026, 3, 10, tzinfo=IST)
    days, hour, minute = expected

    end = session_end(_ist(day, *issued), 24 * 3600)

    assert DAILY_CUTOFF.hour == 5
    assert end == _ist(day + timedelta(days=days), hour, minute)


def test_a_short_lifetime_ends_before_the_cutoff_and_none_disables_it():
    issued = _ist(datetime(2026, 3, 10, tzinfo=IST), 9, 0)

    assert session_end(issued, 600) == issued + 600
    assert session_end(issued, 48 * 3600, None) == issued + 48 * 3600


def test_a_login_in_the_afternoon_is_expected_to_end_before_the_next_morning(fake, connection):
    tomorrow = datetime.fromtimestamp(time.time(), IST) + timedelta(days=1)
    now = [_ist(tomorrow, 15, 0)]  # in the future, so Redis keeps the key until then
    session = make_session(
        fake,
        connection,
        lifetime_seconds=24 * 3600,
        daily_cutoff=DAILY_CUTOFF,
        clock=lambda: now[0],
    )

    tokens = session.current()

    assert tokens.expires_at == _ist(tomorrow + timedelta(days=1), 5, 0)
    assert session.expires_in() == 14 * 3600
    now[0] = tokens.expires_at
    assert session.current().jwt != tokens.jwt and fake.state.logins == 2


def test_an_expired_session_is_replaced_by_a_login(fake, connection):
    now = [1_800_000_000.0]
    session = make_session(fake, connection, lifetime_seconds=600.0, clock=lambda: now[0])
    first = session.current()

    now[0] += 601
    second = session.current()

    assert second.jwt != first.jwt and fake.state.logins == 2


def test_call_with_session_refreshes_once_and_retries_once(fake, connection):
    session = make_session(fake, connection)
    session.current()
    fake.expire_all()  # Angel's daily cut-off: jwt and refresh token both dead

    profile = session.call_with_session(lambda client: client.get_profile())

    assert profile["clientcode"] == fake.client_code
    assert len(fake.seen("getProfile")) == 2
    assert fake.state.logins == 2  # the refresh was refused, so a full login


def test_call_with_session_gives_up_after_one_retry(fake, connection):
    session = make_session(fake, connection)
    session.current()
    fake.script(
        "getProfile",
        *[
            Reply(
                body={
                    "success": False,
                    "message": "Invalid Token",
                    "errorCode": "AG8001",
                    "data": "",
                }
            )
        ]
        * 2,
    )

    with pytest.raises(SessionExpiredError):
        session.call_with_session(lambda client: client.get_profile())
    assert len(fake.seen("getProfile")) == 2 and fake.state.refreshes == 1


def test_an_invalid_totp_waits_for_the_next_window_and_retries_once(fake, connection):
    waits: list[float] = []
    session = make_session(fake, connection, sleep=waits.append)
    fake.script(
        "loginByPassword", Reply(body=envelope_a(ok=False, code="AB1050", message="Invalid totp"))
    )

    session.current()

    assert len(waits) == 1 and 1.0 <= waits[0] <= 31.0
    assert len(fake.seen("loginByPassword")) == 2 and fake.state.logins == 1


def test_a_totp_refused_twice_is_a_configuration_error(fake, connection):
    session = make_session(fake, connection, sleep=lambda s: None)
    refused = Reply(body=envelope_a(ok=False, code="AB1050", message="Invalid totp"))
    fake.script("loginByPassword", refused, refused)

    with pytest.raises(ConfigurationError, match="ANGEL_TOTP_SECRET"):
        session.current()


def test_logins_respect_the_shared_one_per_second_limit(fake, connection):
    session = make_session(fake, connection, limiter=RateLimiter(connection))

    session.login()
    session.login()

    assert len(fake.seen("loginByPassword")) == 2
    stamps = connection.zrange(
        keys.LIMIT.format(endpoint="loginByPassword", window="log"), 0, -1, withscores=True
    )
    assert stamps[1][1] - stamps[0][1] >= 1_100_000  # microseconds apart on Redis's clock


def test_status_without_a_session_says_logged_out(connection):
    assert session_status(connection, "NOBODY") == {"logged_in": False, "client_code": "NOBODY"}


def test_missing_credentials_are_named(fake, connection):
    with pytest.raises(ConfigurationError) as caught:
        require_credentials("S1", "", None, "")

    assert "ANGEL_PIN" in str(caught.value) and "ANGEL_API_KEY" in str(caught.value)
    assert "ANGEL_TOTP_SECRET" in str(caught.value)
    assert "ANGEL_CLIENT_CODE" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="base32"):
        require_credentials("S1", "1", "k", "not base32 !!")


def test_a_session_store_outage_is_transient(fake):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from tradebot.embedded_redis import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(TransientError, match="Redis"):
        make_session(fake, dead).current()


def test_no_secret_reaches_the_logs_or_reprs(fake, connection, caplog):
    session = make_session(fake, connection, sleep=lambda s: None)
    fake.script(
        "loginByPassword", Reply(body=envelope_a(ok=False, code="AB1050", message="Invalid totp"))
    )

    with caplog.at_level(logging.DEBUG):
        tokens = session.current()
        session.refresh()
        fake.expire_all()
        session.call_with_session(lambda client: client.get_rms())
        latest = session.current()

    shown = caplog.text + repr(session) + repr(tokens) + repr(session.client)
    secrets = [
        fake.pin,
        fake.totp_secret,
        fake.api_key,
        tokens.jwt,
        tokens.refresh_token,
        latest.jwt,
        latest.refresh_token,
        latest.feed_token,
    ]
    assert "logged in as" in caplog.text
    for secret in secrets:
        assert secret not in shown
