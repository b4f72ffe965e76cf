"""``manage.py feed_command reconnect|resubscribe|stop|reload_watchlist``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from feeds.control import COMMANDS, send_command


class Command(BaseCommand):
    help = "Send a command to the running feed worker through Redis."

    def add_arguments(self, parser) -> None:
        parser.add_argument("cmd", choices=COMMANDS)
        parser.add_argument("--by", default="cli")

    def handle(self, *args, **options) -> None:
        try:
            entry = send_command(options["cmd"], by=options["by"])
        except Exception as exc:
            raise CommandError(f"could not reach Redis: {exc}") from exc
        self.stdout.write(f"queued {options['cmd']} for the feed ({entry})")
