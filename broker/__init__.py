"""The Angel One SmartAPI adapter: the only package that speaks the broker's protocol.

codec (WebSocket V2 packets), errors (the exception tree and the translation into it),
rest (REST client), limiter (the shared Redis rate limiter), session (the shared login),
scrip_master (instrument list), factory (building them from Django settings), testing
(a scriptable fake REST server for tests), watchlist (the default instruments).
"""
