"""Print the bot's state: the start-up summary, or one JSON object with --json."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from tradebot.status import collect_status, format_status


class Command(BaseCommand):
    help = "Show WebSocket, candles, prices, session, kill switch, orders and health."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args, **options) -> None:
        status = collect_status()
        if options["json"]:
            self.stdout.write(json.dumps(status, default=str))
        else:
            self.stdout.write(format_status(status))
