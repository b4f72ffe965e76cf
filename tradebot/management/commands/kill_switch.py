"""Engage or release the kill switch from the command line."""

from __future__ import annotations

import getpass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tradebot import state


class Command(BaseCommand):
    help = "Engage (stop all new orders, cancel open ones) or release the kill switch."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=("engage", "release", "show"))
        parser.add_argument("--reason", default="")
        parser.add_argument("--by", default=getpass.getuser())

    def handle(self, *args, action: str, reason: str, by: str, **options) -> None:
        reason, by = reason.strip(), by.strip()
        if action != "show" and not by:
            raise CommandError("--by must name who is acting (it goes in the record)")
        if action == "engage":
            state.engage_kill_switch(by=by, reason=reason or "engaged from the command line")
            self.stdout.write(self.style.ERROR("KILL SWITCH ENGAGED: no new orders"))
        elif action == "release":
            if not reason:
                raise CommandError("releasing the kill switch needs --reason")
            state.release_kill_switch(by=by, reason=reason)
            self.stdout.write(self.style.SUCCESS("kill switch released"))
        if action != "show" and settings.REDIS_URL == settings.NO_REDIS_URL:
            self.stdout.write(
                "no running bot found here (no var/redis/url, no REDIS_URL): the switch is "
                "recorded in the database and holds from the next `make run`"
            )
        current = state.bot_state()
        self.stdout.write(
            f"kill switch {'ENGAGED' if current.kill_switch_engaged else 'off'}"
            f" (last change by {current.kill_switch_by or '-'}: "
            f"{current.kill_switch_reason or '-'})"
        )
