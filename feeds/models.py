"""Instruments the bot knows, and which of them the feed streams (the watchlist)."""

from __future__ import annotations

from django.db import models


class Instrument(models.Model):
    """One tradable instrument, keyed by (exchange, token) as the broker keys it."""

    symbol = models.CharField(max_length=50, db_index=True)
    token = models.CharField(max_length=25, help_text="Scrip-master instrument token.")
    exchange = models.CharField(max_length=10, default="NSE")
    exchange_type = models.PositiveSmallIntegerField(
        default=1, help_text="WebSocket exchangeType (1 = NSE cash)."
    )
    name = models.CharField(max_length=100, blank=True)
    tick_size_paise = models.PositiveIntegerField(default=5)
    lot_size = models.PositiveIntegerField(default=1)
    on_watchlist = models.BooleanField(
        default=False, help_text="Streamed by the feed; changes reach it without a restart."
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "token"], name="instrument_exchange_token")
        ]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.exchange}:{self.token})"

    @property
    def key(self) -> tuple[int, str]:
        """(exchange type, token): how ticks identify the instrument."""
        return (self.exchange_type, self.token)
