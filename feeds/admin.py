from django.contrib import admin

from feeds.models import Instrument


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "exchange", "token", "on_watchlist", "active", "tick_size_paise")
    list_filter = ("exchange", "on_watchlist", "active")
    list_editable = ("on_watchlist", "active")
    search_fields = ("symbol", "token", "name")
    actions = ("add_to_watchlist", "remove_from_watchlist")

    @admin.action(description="Add to the feed watchlist")
    def add_to_watchlist(self, request, queryset):
        for instrument in queryset:  # save() per row so the feed hears about it
            instrument.on_watchlist = True
            instrument.save(update_fields=["on_watchlist", "updated_at"])

    @admin.action(description="Remove from the feed watchlist")
    def remove_from_watchlist(self, request, queryset):
        for instrument in queryset:
            instrument.on_watchlist = False
            instrument.save(update_fields=["on_watchlist", "updated_at"])
