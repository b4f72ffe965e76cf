"""Candles the strategies trade on, each symbol's history status, and strategy settings.

Prices are integer paise, exactly as the feed delivers them; rupees are a property.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Candle(models.Model):
    """One closed candle of one instrument; ``start`` is its aware start time (IST)."""

    class Source(models.TextChoices):
        HISTORICAL = "historical"  # getCandleData at bootstrap or backfill
        LIVE = "live"  # built from feed ticks
        REPAIRED = "repaired"  # a live candle replaced from getCandleData after a gap

    instrument = models.ForeignKey("feeds.Instrument", on_delete=models.CASCADE)
    interval = models.CharField(max_length=20)
    start = models.DateTimeField()
    open = models.BigIntegerField(help_text="paise")
    high = models.BigIntegerField(help_text="paise")
    low = models.BigIntegerField(help_text="paise")
    close = models.BigIntegerField(help_text="paise")
    volume = models.BigIntegerField(default=0)
    source = models.CharField(max_length=12, choices=Source.choices)
    complete = models.BooleanField(
        default=True,
        help_text="False when the candle spans a feed gap and was not repaired: "
        "strategies never see it.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instrument", "interval", "start"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "interval", "start"], name="candle_instrument_interval_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.start:%Y-%m-%d %H:%M}"

    @property
    def close_rupees(self) -> Decimal:
        return Decimal(self.close) / 100


class HistoryStatus(models.Model):
    """Whether a watchlist symbol's historical candles loaded, or it is warming up."""

    class State(models.TextChoices):
        LOADING = "loading"
        LOADED = "loaded"
        WARMING_UP = "warming_up"  # history failed: live candles only, backfill retrying

    instrument = models.OneToOneField(
        "feeds.Instrument", on_delete=models.CASCADE, related_name="history_status"
    )
    interval = models.CharField(max_length=20)
    state = models.CharField(max_length=12, choices=State.choices, default=State.LOADING)
    candles = models.PositiveIntegerField(default=0, help_text="historical candles loaded")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    next_backfill_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instrument__symbol"]
        verbose_name_plural = "history status"

    def __str__(self) -> str:
        return f"{self.instrument_id}: {self.state}"


class StrategyConfig(models.Model):
    """One strategy the engine runs, on the watchlist or on chosen instruments.

    An exception inside the strategy pauses it (``paused`` with the error); untick
    ``paused`` in the admin to resume it. The engine rereads this table every few seconds.
    """

    name = models.CharField(max_length=40, unique=True, help_text="Order intents carry it.")
    kind = models.CharField(max_length=40, help_text="Registered strategy class name.")
    params = models.JSONField(default=dict, blank=True)
    instruments = models.ManyToManyField(
        "feeds.Instrument", blank=True, help_text="Empty = every watchlist instrument."
    )
    enabled = models.BooleanField(default=True)
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        state = "paused" if self.paused else ("on" if self.enabled else "off")
        return f"{self.name} ({self.kind}, {state})"
