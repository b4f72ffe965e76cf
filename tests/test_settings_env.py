"""Settings come from the environment and fail loudly, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tradebot import env
from tradebot.logging import mask_text


def test_it_reads_a_secret_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "pin"
    secret.write_text("4321\n")
    monkeypatch.setenv("ANGEL_PIN_FILE", str(secret))

    assert env.env_str("ANGEL_PIN") == "4321"


def test_it_names_the_variable_when_a_number_is_malformed(monkeypatch):
    monkeypatch.setenv("FEED_MODE", "two")

    with pytest.raises(env.ConfigError, match="FEED_MODE='two' is not a whole number"):
        env.env_int("FEED_MODE", 2)


def test_it_rejects_a_yes_no_value_it_cannot_read(monkeypatch):
    monkeypatch.setenv("MARKET_ALWAYS_OPEN", "maybe")

    with pytest.raises(env.ConfigError, match="MARKET_ALWAYS_OPEN"):
        env.env_bool("MARKET_ALWAYS_OPEN", True)


def test_it_refuses_an_unknown_trading_mode():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, "TRADEBOT_MODE": "yolo"},
        capture_output=True, text=True,
    )

    assert result.returncode != 0
    assert "TRADEBOT_MODE='yolo' must be one of paper, live" in result.stderr


def test_live_mode_requires_a_django_secret_key():
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    environment["TRADEBOT_MODE"] = "live"

    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=environment, capture_output=True, text=True
    )

    assert "DJANGO_SECRET_KEY is not set (required in live mode)" in result.stderr


def test_it_masks_jwts_and_keyed_secrets_in_log_text():
    line = (
        'login ok jwt=eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJl '
        '{"password": "1234", "totp": "123456"} Authorization: Bearer abc.def'
    )

    masked = mask_text(line)

    assert "eyJ" not in masked
    assert "1234" not in masked and "123456" not in masked
    assert "abc.def" not in masked


def test_mask_shows_only_the_tail_of_a_secret():
    assert env.mask("paper-api-key") == "****ey (13 chars)"
    assert env.mask(None) == "(unset)"


def test_a_route_name_in_a_log_line_is_not_mistaken_for_a_password():
    assert mask_text("loginByPassword: could not connect") == (
        "loginByPassword: could not connect"
    )
    assert "abc123" not in mask_text('{"refreshToken": "abc123"}')


def _database_settings(url: str) -> subprocess.CompletedProcess:
    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
    )


def test_database_url_switches_to_postgresql():
    result = _database_settings("postgres://bot:secret@127.0.0.1:5432/tradebot")

    assert result.stdout.strip().splitlines()[-1] == "django.db.backends.postgresql", result.stderr


def test_a_malformed_database_url_is_named():
    result = _database_settings("nosuchdb://what")

    assert result.returncode != 0
    assert "DATABASE_URL cannot be parsed" in result.stderr


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("ORDER_QUANTITY", "0", "ORDER_QUANTITY=0 is too small; at least 1"),
        ("FEED_WATCHDOG_SECONDS", "0", "FEED_WATCHDOG_SECONDS=0.0 is too small; at least 1.0"),
        ("FEED_CONNECTIONS", "4", "FEED_CONNECTIONS=4 is too large; at most 3"),
        ("CANDLE_INTERVAL", "2m", "CANDLE_INTERVAL='2m' must be one of ONE_MINUTE"),
        ("CANDLE_EXTRA_INTERVALS", "FIVE_MINUTE,2m", "CANDLE_EXTRA_INTERVALS has '2m'"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL='VERBOSE' must be one of DEBUG"),
        ("FEED_PING_SECONDS", "nan", "FEED_PING_SECONDS='nan' is not a finite number"),
        ("REDIS_URL", "notaurl", "REDIS_URL must start with redis://, rediss:// or unix://"),
        ("NSE_HOLIDAYS_FILE", "/nonexistent/holidays.txt",
         "NSE_HOLIDAYS_FILE=/nonexistent/holidays.txt cannot be read"),
    ],
)
def test_a_value_the_bot_cannot_use_is_refused_at_start_naming_it(name, value, message):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, name: value}, capture_output=True, text=True,
    )

    assert result.returncode != 0
    assert message in result.stderr


def test_a_lower_case_log_level_is_accepted():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, "LOG_LEVEL": "warning"}, capture_output=True, text=True,
    )

    assert result.returncode == 0, result.stderr


def test_a_holiday_file_with_a_bad_line_is_named_with_its_line(tmp_path):
    listing = tmp_path / "holidays.txt"
    listing.write_text("2027-01-26\nnot-a-date\n")

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, "NSE_HOLIDAYS_FILE": str(listing)}, capture_output=True, text=True,
    )

    assert result.returncode != 0
    assert f"NSE_HOLIDAYS_FILE={listing} line 2 is not a date (YYYY-MM-DD): 'not-a-date'" in (
        result.stderr
    )
