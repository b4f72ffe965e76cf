"""Redis key names shared by every process. One place, so no two modules disagree."""

from __future__ import annotations

PREFIX = "tb:"

# Market data
TICKS_STREAM = PREFIX + "ticks:{exchange_type}"  # XADD target, one stream per segment
LAST_PRICE = PREFIX + "ltp"  # hash "exchange_type:token" -> last price in paise
LAST_TICK_AT = PREFIX + "ltp:at"  # hash "exchange_type:token" -> exchange ms timestamp

# Feed worker
FEED_STATE = PREFIX + "feed:state"  # hash written by run_feed
FEED_COMMANDS = PREFIX + "feed:commands"  # stream of operator / health commands
FEED_SLOTS = PREFIX + "feed:slot:{client_code}:{slot}"  # connection leases (max 3)

# Broker session (shared by all processes)
SESSION = PREFIX + "session:{client_code}"  # hash of jwt, refresh, feed token, issued_at
SESSION_LOCK = PREFIX + "session:{client_code}:lock"

# Rate limiter
# broker.limiter keeps one sorted set per endpoint (window="log") and a "seq" counter.
LIMIT = PREFIX + "limit:{endpoint}:{window}"

# Bot state
KILL_SWITCH = PREFIX + "kill"  # "1" when engaged; the database row is the record
ENGINE_STATE = PREFIX + "engine:state"
CANDLES = PREFIX + "candles:{interval}:{key}"  # recent closed candles per instrument
RISK_ORDERS = PREFIX + "risk:orders"  # orders-per-minute window of the risk gate
BOOTSTRAP_STATE = PREFIX + "bootstrap:state"
HEALTH_LAST = PREFIX + "health:last"
