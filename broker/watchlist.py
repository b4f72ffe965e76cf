"""The default paper-trading watchlist: 50 liquid NSE equities with their scrip-master
tokens (exchange segment NSE, WebSocket exchangeType 1, tick size 5 paise, lot 1).

The simulator lists the same instruments in its scrip master, so a fresh install trades
without downloading anything. Live mode resolves tokens from Angel's scrip master.
"""

from __future__ import annotations

# (trading symbol, token, reference price in rupees for the simulator's random walk)
DEFAULT_WATCHLIST: tuple[tuple[str, str, float], ...] = (
    ("RELIANCE-EQ", "2885", 1285.0),
    ("TCS-EQ", "11536", 3410.0),
    ("HDFCBANK-EQ", "1333", 1720.0),
    ("ICICIBANK-EQ", "4963", 1290.0),
    ("INFY-EQ", "1594", 1580.0),
    ("SBIN-EQ", "3045", 805.0),
    ("BHARTIARTL-EQ", "10604", 1640.0),
    ("ITC-EQ", "1660", 432.0),
    ("LT-EQ", "11483", 3560.0),
    ("KOTAKBANK-EQ", "1922", 1790.0),
    ("AXISBANK-EQ", "5900", 1140.0),
    ("HINDUNILVR-EQ", "1394", 2380.0),
    ("BAJFINANCE-EQ", "317", 7050.0),
    ("MARUTI-EQ", "10999", 11500.0),
    ("ASIANPAINT-EQ", "236", 2310.0),
    ("HCLTECH-EQ", "7229", 1620.0),
    ("WIPRO-EQ", "3787", 298.0),
    ("SUNPHARMA-EQ", "3351", 1760.0),
    ("TITAN-EQ", "3506", 3350.0),
    ("ULTRACEMCO-EQ", "11532", 11200.0),
    ("NESTLEIND-EQ", "17963", 2250.0),
    ("TATAMOTORS-EQ", "3456", 760.0),
    ("TATASTEEL-EQ", "3499", 142.0),
    ("POWERGRID-EQ", "14977", 318.0),
    ("NTPC-EQ", "11630", 352.0),
    ("ONGC-EQ", "2475", 254.0),
    ("COALINDIA-EQ", "20374", 392.0),
    ("JSWSTEEL-EQ", "11723", 965.0),
    ("M&M-EQ", "2031", 2940.0),
    ("ADANIENT-EQ", "25", 2450.0),
    ("ADANIPORTS-EQ", "15083", 1230.0),
    ("BAJAJFINSV-EQ", "16675", 1810.0),
    ("BAJAJ-AUTO-EQ", "16669", 8650.0),
    ("BPCL-EQ", "526", 292.0),
    ("BRITANNIA-EQ", "547", 4980.0),
    ("CIPLA-EQ", "694", 1480.0),
    ("DIVISLAB-EQ", "10940", 5900.0),
    ("DRREDDY-EQ", "881", 1260.0),
    ("EICHERMOT-EQ", "910", 5100.0),
    ("GRASIM-EQ", "1232", 2600.0),
    ("HDFCLIFE-EQ", "467", 690.0),
    ("HEROMOTOCO-EQ", "1348", 4300.0),
    ("HINDALCO-EQ", "1363", 640.0),
    ("INDUSINDBK-EQ", "5258", 990.0),
    ("SBILIFE-EQ", "21808", 1520.0),
    ("TECHM-EQ", "13538", 1560.0),
    ("TATACONSUM-EQ", "3432", 1020.0),
    ("APOLLOHOSP-EQ", "157", 6900.0),
    ("SHRIRAMFIN-EQ", "4306", 610.0),
    ("LTIM-EQ", "17818", 5200.0),
)

TICK_SIZE_PAISE = 5
