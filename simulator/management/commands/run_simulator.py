"""``manage.py run_simulator``: the paper broker in the foreground (Ctrl-C stops it)."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand

from simulator.__main__ import add_arguments, config_from_args, serve
from simulator.config import SimConfig


class Command(BaseCommand):
    help = "Run the Angel One simulator (REST, smart-stream, order updates, /_sim control)."

    def add_arguments(self, parser):
        defaults = SimConfig(
            host=getattr(settings, "SIMULATOR_HOST", "127.0.0.1"),
            port=getattr(settings, "SIMULATOR_PORT", 8600),
            market_always_open=getattr(settings, "MARKET_ALWAYS_OPEN", True),
        )
        add_arguments(parser, defaults)

    def handle(self, *args, **options):
        from argparse import Namespace

        config = config_from_args(Namespace(**options))
        asyncio.run(serve(config))
