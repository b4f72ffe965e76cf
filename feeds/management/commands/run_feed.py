"""``manage.py run_feed``: stream market data into Redis until stopped.

SIGTERM or SIGINT stops it cleanly within a few seconds; so do the ``stop`` command
(``manage.py feed_command stop``) and, when FEED_STOP_ON_KILL_SWITCH is on, the kill
switch. Outside market hours it stays up, idle, and connects when the market opens.
"""

from __future__ import annotations

import logging
import signal

from django.core.management.base import BaseCommand

from feeds.config import FeedConfig
from feeds.credentials import SessionCredentials
from feeds.worker import FeedWorker


class Command(BaseCommand):
    help = "Run the self-healing market-data feed (WebSocket V2 -> Redis streams)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--connections", type=int, default=None,
            help="WebSocket connections to open (1-3, default FEED_CONNECTIONS or 1); "
            "instruments are sharded across them",
        )

    def handle(self, *args, **options) -> None:
        from django.conf import settings

        # websocket-client logs every disconnect at ERROR ("... - goodbye"); the feed
        # reports each one itself with the attempt count and the wait.
        logging.getLogger("websocket").setLevel(logging.CRITICAL)
        connections = options["connections"] or getattr(settings, "FEED_CONNECTIONS", 1)
        worker = FeedWorker(
            FeedConfig.from_settings(), SessionCredentials(), connections=connections
        )

        def on_signal(signum, _frame) -> None:
            worker.request_stop(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker.run()
