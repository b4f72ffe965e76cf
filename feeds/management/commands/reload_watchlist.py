"""``manage.py reload_watchlist``: make the running feed re-read the watchlist now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from feeds.control import send_command
from feeds.models import Instrument


class Command(BaseCommand):
    help = "Tell the running feed worker to reload the watchlist from the database."

    def handle(self, *args, **options) -> None:
        count = Instrument.objects.filter(on_watchlist=True, active=True).count()
        try:
            send_command("reload_watchlist", by="reload_watchlist command")
        except Exception as exc:
            raise CommandError(f"could not reach Redis: {exc}") from exc
        self.stdout.write(f"feed told to reload the watchlist ({count} instruments)")
