"""Admin for bot state: the kill switch, its history and the activity feed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from tradebot import state
from tradebot.models import Activity, BotState, KillSwitchEvent
from tradebot.status import collect_status


@admin.register(BotState)
class BotStateAdmin(admin.ModelAdmin):
    list_display = ("trading", "kill_switch_by", "kill_switch_reason", "kill_switch_at")
    readonly_fields = (
        "live_status", "kill_switch_engaged", "kill_switch_by", "kill_switch_reason",
        "kill_switch_at", "updated_at",
    )
    fields = readonly_fields[:1] + ("square_off_on_kill",) + readonly_fields[1:]
    change_form_template = "admin/tradebot/botstate/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        obj = state.bot_state()
        return HttpResponseRedirect(reverse("admin:tradebot_botstate_change", args=[obj.pk]))

    @admin.display(description="trading")
    def trading(self, obj: BotState) -> str:
        return "KILL SWITCH ENGAGED" if obj.kill_switch_engaged else "enabled"

    @admin.display(description="live status")
    def live_status(self, obj: BotState) -> str:
        try:
            status = collect_status()
        except Exception as exc:  # the page must render even when Redis is down
            return f"status unavailable: {exc}"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>",
            ((key, value) for key, value in status.items()
             if not isinstance(value, dict | list)),
        )
        return format_html("<table>{}</table>", rows)

    def get_urls(self):
        return [
            path("kill/", self.admin_site.admin_view(self.kill), name="tradebot_kill"),
            path("release/", self.admin_site.admin_view(self.release), name="tradebot_release"),
            path("feed/", self.admin_site.admin_view(self.feed), name="tradebot_feed"),
        ] + super().get_urls()

    def feed(self, request: HttpRequest):
        """Reconnect, resubscribe or stop the running feed worker, through Redis."""
        from feeds.control import COMMANDS, send_command

        command = request.POST.get("command", "")
        if request.method == "POST" and command in COMMANDS:
            send_command(command, by=request.user.get_username())
            state.record("feed", f"feed {command} requested by {request.user.get_username()}")
            self.message_user(request, f"Feed asked to {command}.", messages.INFO)
        return HttpResponseRedirect(reverse("admin:tradebot_botstate_changelist"))

    def kill(self, request: HttpRequest):
        if request.method == "POST":
            reason = request.POST.get("reason", "").strip() or "engaged from the admin"
            state.engage_kill_switch(by=request.user.get_username(), reason=reason)
            self.message_user(request, "Kill switch engaged: no new orders.", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:tradebot_botstate_changelist"))

    def release(self, request: HttpRequest):
        if request.method == "POST":
            reason = request.POST.get("reason", "").strip()
            if not reason:
                self.message_user(request, "Releasing needs a reason.", messages.WARNING)
            else:
                state.release_kill_switch(by=request.user.get_username(), reason=reason)
                self.message_user(request, "Kill switch released.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tradebot_botstate_changelist"))


@admin.register(KillSwitchEvent)
class KillSwitchEventAdmin(admin.ModelAdmin):
    list_display = ("at", "engaged", "by", "reason")
    readonly_fields = ("at", "engaged", "by", "reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ("at", "level", "component", "message")
    list_filter = ("level", "component")
    search_fields = ("message",)
    readonly_fields = ("at", "level", "component", "message", "data")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
