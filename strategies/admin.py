"""Admin pages: candles, each symbol's history status (with the summary line) and the
strategy configurations (pause, resume)."""

from __future__ import annotations

from django.contrib import admin, messages

from strategies.models import Candle, HistoryStatus, StrategyConfig


def history_summary() -> str:
    """``historical candles: 37/50 loaded, 13 warming up``, from the database rows."""
    rows = HistoryStatus.objects.filter(instrument__on_watchlist=True)
    total = rows.count()
    loaded = rows.filter(state=HistoryStatus.State.LOADED).count()
    warming = rows.filter(state=HistoryStatus.State.WARMING_UP).count()
    return f"historical candles: {loaded}/{total} loaded, {warming} warming up"


def _rupees(field: str):
    """A changelist column showing a paise field in rupees, sortable by the field."""

    @admin.display(description=f"{field} (Rs)", ordering=field)
    def column(self, candle: Candle) -> str:
        return f"{getattr(candle, field) / 100:.2f}"

    return column


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ("instrument", "interval", "start", "open_rs", "high_rs", "low_rs",
                    "close_rs", "volume", "source", "complete")
    list_filter = ("interval", "source", "complete")
    search_fields = ("instrument__symbol",)
    date_hierarchy = "start"
    list_select_related = ("instrument",)
    readonly_fields = [f.name for f in Candle._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    # Stored in paise as the feed delivers them; shown in rupees like the orders.
    open_rs = _rupees("open")
    high_rs = _rupees("high")
    low_rs = _rupees("low")
    close_rs = _rupees("close")


@admin.register(HistoryStatus)
class HistoryStatusAdmin(admin.ModelAdmin):
    list_display = ("instrument", "interval", "state", "candles", "attempts", "last_error",
                    "updated_at")
    list_filter = ("state",)
    search_fields = ("instrument__symbol",)
    list_select_related = ("instrument",)
    readonly_fields = [f.name for f in HistoryStatus._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        messages.info(request, history_summary())
        return super().changelist_view(request, extra_context)


@admin.register(StrategyConfig)
class StrategyConfigAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "enabled", "paused", "paused_reason", "updated_at")
    list_filter = ("enabled", "paused", "kind")
    filter_horizontal = ("instruments",)
    actions = ("resume", "pause")

    @admin.action(description="Resume (clear the pause and its error)")
    def resume(self, request, queryset):
        for config in queryset:
            config.paused = False
            config.paused_reason = ""
            config.save()
        self.message_user(request, f"{queryset.count()} resumed; the engine picks them up "
                          "within a few seconds")

    @admin.action(description="Pause")
    def pause(self, request, queryset):
        for config in queryset:
            config.paused = True
            config.paused_reason = f"paused by {request.user}"
            config.save()
        self.message_user(request, f"{queryset.count()} paused")
