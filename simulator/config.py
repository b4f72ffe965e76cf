"""Simulator settings and the demo account it accepts.

The demo credentials are not secrets: nothing real uses them, and the project's settings
carry the same values for paper mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from broker.watchlist import DEFAULT_WATCHLIST

DEMO_CLIENT_CODE = "S0001"
DEMO_PIN = "1234"
DEMO_API_KEY = "paper-api-key"
DEMO_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

# (trading symbol, token, reference price in rupees); all NSE cash, tick 5 paise, lot 1.
Instrument = tuple[str, str, float]


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a random free port, chosen when the server first listens
    seed: int = 42
    instruments: tuple[Instrument, ...] = field(default=DEFAULT_WATCHLIST)
    tick_rate: float = 1.5  # market updates per second per instrument
    market_always_open: bool = True
    token_lifetime_seconds: float = 24 * 3600
    enforce_rate_limits: bool = True
    order_fill_delay: float = 0.2
    replay_csv: str | None = None
    # Beyond the required knobs:
    replay_token: str | None = None  # instrument the CSV drives; default the first one
    auth_error_status: int = 200  # HTTP status sent with shape-B (AG80xx) answers
    max_ws_connections: int = 3  # per client code, per stream endpoint
    capital: float = 1_000_000.0  # paper cash; buys beyond it are rejected by "RMS"
    client_code: str = DEMO_CLIENT_CODE
    pin: str = DEMO_PIN
    api_key: str = DEMO_API_KEY
    totp_secret: str = DEMO_TOTP_SECRET
    # Seconds between market engine steps, at most: at high total rates the step shrinks
    # (down to engine_min_interval) so one step generates about engine_step_ticks updates.
    # A tick is stamped when its step runs and written at the step's end, so the step is
    # what the exchange timestamp lags the socket by, and the size of each burst.
    engine_interval: float = 0.02
    engine_min_interval: float = 0.002
    engine_step_ticks: int = 40
    max_ws_buffer: int = 8 * 1024 * 1024  # a slower reader loses frames beyond this

    def with_overrides(self, **overrides: object) -> SimConfig:
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown SimConfig fields: {sorted(unknown)}")
        if "instruments" in overrides:
            rows = overrides["instruments"]
            overrides["instruments"] = tuple(
                (str(s), str(t), float(p)) for s, t, p in rows  # type: ignore[attr-defined]
            )
        return replace(self, **overrides)  # type: ignore[arg-type]
