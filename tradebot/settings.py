"""Django settings for tradebot, read from the environment (see .env.example)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

from tradebot.env import (
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_optional,
    env_str,
)
from tradebot.market_hours import read_holidays_file

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TRADEBOT_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- mode ---------------------------------------------------------------------------
TRADING_MODE = env_choice("TRADEBOT_MODE", "paper", ("paper", "live"))
PAPER = TRADING_MODE == "paper"


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept under var/."""
    key = env_optional("DJANGO_SECRET_KEY")
    if key:
        return key
    if not PAPER:
        raise ConfigError("DJANGO_SECRET_KEY is not set (required in live mode)")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ("127.0.0.1", "localhost"))
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "tradebot",
    "broker",
    "simulator",
    "feeds",
    "strategies",
    "orders",
    "health",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tradebot.urls"
WSGI_APPLICATION = "tradebot.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------
_database_url = env_optional("DATABASE_URL")
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
    except Exception as exc:  # the library raises several types for a bad URL
        raise ConfigError(f"DATABASE_URL cannot be parsed: {exc}") from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("TRADEBOT_SQLITE_PATH", str(VAR_DIR / "tradebot.sqlite3")),
            # Several processes write: WAL lets readers go on, and writers wait for the
            # lock instead of failing at once.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory, so that processes started by the tests share it;
            # one per test run, so two runs on one machine never share a database.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- time ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-in"
TIME_ZONE = "Asia/Kolkata"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Extra NSE holidays (one ISO date per line); read here once so a bad file stops start-up.
NSE_HOLIDAYS_FILE = env_optional("NSE_HOLIDAYS_FILE")
if NSE_HOLIDAYS_FILE:
    read_holidays_file(NSE_HOLIDAYS_FILE)

# --- redis and celery ---------------------------------------------------------------
# The launcher (`make run`) writes the address of the Redis it started to this file, so
# commands run from another shell (bot_status, kill_switch, chaos) find the same one.
EMBEDDED_REDIS_URL_FILE = VAR_DIR / "redis" / "url"


def _embedded_redis_url() -> str | None:
    try:
        return EMBEDDED_REDIS_URL_FILE.read_text().strip() or None
    except OSError:
        return None


# Neither REDIS_URL nor a running `make run` here: a placeholder that broker.factory
# refuses with a message saying so (and that refuses connections at once anywhere else),
# so a command run while the bot is stopped never talks to some other Redis.
NO_REDIS_URL = "redis://127.0.0.1:0/0"
REDIS_URL = env_optional("REDIS_URL") or _embedded_redis_url() or NO_REDIS_URL
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_VISIBILITY_TIMEOUT = 600
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "health_check_interval": 10,
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "unacked_restore_throttle": 1,
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 15
CELERY_TASK_DEFAULT_QUEUE = "control"
CELERY_TASK_ROUTES = {
    "orders.tasks.*": {"queue": "orders"},
    "health.tasks.*": {"queue": "control"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- broker (Angel One SmartAPI, or the simulator in paper mode) --------------------
SIMULATOR_HOST = env_str("SIMULATOR_HOST", "127.0.0.1")
SIMULATOR_PORT = env_int("SIMULATOR_PORT", 8600, minimum=1, maximum=65535)
_sim_root = f"http://{SIMULATOR_HOST}:{SIMULATOR_PORT}"
_sim_ws = f"ws://{SIMULATOR_HOST}:{SIMULATOR_PORT}"

# Demo credentials the simulator accepts. They are not secrets: nothing real uses them.
SIMULATOR_CLIENT_CODE = "S0001"
SIMULATOR_PIN = "1234"
SIMULATOR_API_KEY = "paper-api-key"
SIMULATOR_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105 (demo value)

_defaults: dict[str, str | None]
if PAPER:
    _defaults = {
        "rest": _sim_root,
        "ws": _sim_ws + "/smart-stream",
        "order_ws": _sim_ws + "/smart-order-update",
        "client_code": SIMULATOR_CLIENT_CODE,
        "pin": SIMULATOR_PIN,
        "api_key": SIMULATOR_API_KEY,
        "totp": SIMULATOR_TOTP_SECRET,
    }
else:
    _defaults = {
        "rest": "https://apiconnect.angelone.in",
        "ws": "wss://smartapisocket.angelone.in/smart-stream",
        "order_ws": "wss://tns.angelone.in/smart-order-update",
        "client_code": None,
        "pin": None,
        "api_key": None,
        "totp": None,
    }

ANGEL_REST_URL = env_str("ANGEL_REST_URL", _defaults["rest"])
ANGEL_WS_URL = env_str("ANGEL_WS_URL", _defaults["ws"])
ANGEL_ORDER_WS_URL = env_str("ANGEL_ORDER_WS_URL", _defaults["order_ws"])
# Live credentials are checked when a process first logs in (broker.session), so that
# `manage.py migrate` and the admin work before they are configured.
ANGEL_CLIENT_CODE = env_optional("ANGEL_CLIENT_CODE") or _defaults["client_code"]
ANGEL_PIN = env_optional("ANGEL_PIN") or _defaults["pin"]
ANGEL_API_KEY = env_optional("ANGEL_API_KEY") or _defaults["api_key"]
ANGEL_TOTP_SECRET = env_optional("ANGEL_TOTP_SECRET") or _defaults["totp"]
ANGEL_HTTP_TIMEOUT = env_float("ANGEL_HTTP_TIMEOUT", 7.0, minimum=0.5)
# Sent in the X-Client* headers. Under the SEBI retail-algo rules orders must come from
# the static IP registered with Angel: set ANGEL_CLIENT_PUBLIC_IP to it in live mode.
ANGEL_CLIENT_LOCAL_IP = env_str("ANGEL_CLIENT_LOCAL_IP", "127.0.0.1")
ANGEL_CLIENT_PUBLIC_IP = env_str("ANGEL_CLIENT_PUBLIC_IP", "127.0.0.1")
ANGEL_MAC_ADDRESS = env_optional("ANGEL_MAC_ADDRESS")
SCRIP_MASTER_CACHE_DIR = VAR_DIR / "cache"
ANGEL_SCRIP_MASTER_URL = env_str(
    "ANGEL_SCRIP_MASTER_URL",
    _sim_root + "/OpenAPI_File/files/OpenAPIScripMaster.json"
    if PAPER
    else "https://margincalculator.angelone.in/OpenAPI_File/files/OpenAPIScripMaster.json",
)
# Expected session lifetime; the token check warns this long before it runs out.
SESSION_LIFETIME_HOURS = env_float("SESSION_LIFETIME_HOURS", 24.0, minimum=0.1)
SESSION_WARN_BEFORE_MINUTES = env_int("SESSION_WARN_BEFORE_MINUTES", 60, minimum=0)

# --- market hours ------------------------------------------------------------------
# In paper mode the simulated market stays open around the clock unless this is off.
MARKET_ALWAYS_OPEN = env_bool("MARKET_ALWAYS_OPEN", PAPER)

# --- feed ---------------------------------------------------------------------------
# 1 LTP, 2 Quote, 3 SnapQuote (candle volume needs 2 or 3)
FEED_MODE = int(env_choice("FEED_MODE", "2", ("1", "2", "3")))
FEED_WATCHDOG_SECONDS = env_float("FEED_WATCHDOG_SECONDS", 15.0, minimum=1.0)
FEED_STREAM_MAXLEN = env_int("FEED_STREAM_MAXLEN", 500_000, minimum=1000)
# Angel allows 3 WebSocket connections per client code.
FEED_CONNECTIONS = env_int("FEED_CONNECTIONS", 1, minimum=1, maximum=3)
# One instrument silent this long while others flow: resubscribe it.
FEED_QUIET_SECONDS = env_float("FEED_QUIET_SECONDS", 60.0, minimum=1.0)
FEED_PING_SECONDS = env_float("FEED_PING_SECONDS", 10.0, minimum=0.5)
FEED_PONG_TIMEOUT_SECONDS = env_float("FEED_PONG_TIMEOUT_SECONDS", 5.0, minimum=0.5)
FEED_CONNECT_TIMEOUT_SECONDS = env_float("FEED_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.5)
FEED_BACKOFF_CAP_SECONDS = env_float("FEED_BACKOFF_CAP_SECONDS", 30.0, minimum=1.0)
# Connected this long: the attempt count resets.
FEED_HEALTHY_SECONDS = env_float("FEED_HEALTHY_SECONDS", 30.0, minimum=0.5)
FEED_BUFFER_MAX = env_int("FEED_BUFFER_MAX", 200_000, minimum=1)  # ticks held while Redis is away
FEED_WATCHLIST_POLL_SECONDS = env_float("FEED_WATCHLIST_POLL_SECONDS", 30.0)
FEED_STOP_ON_KILL_SWITCH = env_bool("FEED_STOP_ON_KILL_SWITCH", False)
FEED_SWITCH_INTERVAL = env_float("FEED_SWITCH_INTERVAL", 0.0005)

# --- strategy and risk --------------------------------------------------------------
# Intervals the candle builder makes live (getCandleData names; strategies.candles).
LIVE_CANDLE_INTERVALS = (
    "ONE_MINUTE", "THREE_MINUTE", "FIVE_MINUTE", "TEN_MINUTE", "FIFTEEN_MINUTE",
    "THIRTY_MINUTE", "ONE_HOUR",
)
CANDLE_INTERVAL = env_choice("CANDLE_INTERVAL", "ONE_MINUTE", LIVE_CANDLE_INTERVALS)
BOOTSTRAP_CANDLES = env_int("BOOTSTRAP_CANDLES", 200, minimum=1)
ORDER_DEADLINE_SECONDS = env_int("ORDER_DEADLINE_SECONDS", 30, minimum=1)
ORDER_QUANTITY = env_int("ORDER_QUANTITY", 1, minimum=1)
CANDLE_EXTRA_INTERVALS = tuple(env_list("CANDLE_EXTRA_INTERVALS"))  # e.g. FIVE_MINUTE
for _interval in CANDLE_EXTRA_INTERVALS:
    if _interval not in LIVE_CANDLE_INTERVALS:
        raise ConfigError(
            f"CANDLE_EXTRA_INTERVALS has {_interval!r}; use {', '.join(LIVE_CANDLE_INTERVALS)}"
        )
CANDLE_GRACE_SECONDS = env_float("CANDLE_GRACE_SECONDS", 2.0)
CANDLE_SILENCE_SECONDS = env_float("CANDLE_SILENCE_SECONDS", 30.0)
CANDLE_REPAIR_HOLD_SECONDS = env_float("CANDLE_REPAIR_HOLD_SECONDS", 90.0)
BACKFILL_RETRY_SECONDS = env_float("BACKFILL_RETRY_SECONDS", 30.0)
REBOOTSTRAP_AFTER_OUTAGE_SECONDS = env_float("REBOOTSTRAP_AFTER_OUTAGE_SECONDS", 300.0)
# Risk gate: every refusal is written to the activity feed with its reason.
RISK_ENTRY_CUTOFF_MINUTES = env_int("RISK_ENTRY_CUTOFF_MINUTES", 15)
RISK_SQUARE_OFF_TIME = env_str("RISK_SQUARE_OFF_TIME", "15:20")
RISK_MAX_POSITION_QTY = env_int("RISK_MAX_POSITION_QTY", 1000, minimum=0)
RISK_MAX_POSITION_VALUE = env_float("RISK_MAX_POSITION_VALUE", 200_000.0)  # rupees
RISK_MAX_ORDER_VALUE = env_float("RISK_MAX_ORDER_VALUE", 100_000.0)  # rupees
RISK_MAX_ORDERS_PER_MINUTE = env_int("RISK_MAX_ORDERS_PER_MINUTE", 20, minimum=0)
RISK_DAILY_LOSS_LIMIT = env_float("RISK_DAILY_LOSS_LIMIT", 5_000.0)  # rupees

# --- web ----------------------------------------------------------------------------
WEB_HOST = env_str("WEB_HOST", "127.0.0.1")
WEB_PORT = env_int("WEB_PORT", 8000, minimum=1, maximum=65535)
FLOWER_PORT = env_int("FLOWER_PORT", 5555, minimum=1, maximum=65535)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in LOG_LEVELS:
    raise ConfigError(f"LOG_LEVEL={LOG_LEVEL!r} must be one of {', '.join(LOG_LEVELS)}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "tradebot.logging.MaskSecretsFilter"}},
    "formatters": {
        "plain": {
            "()": "tradebot.logging.IstFormatter",
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        # The feed logs every disconnect itself, with the attempt count and the wait.
        "websocket": {"level": "CRITICAL"},
    },
}
