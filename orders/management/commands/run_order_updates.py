"""``manage.py run_order_updates``: follow the order-update WebSocket until stopped."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Apply Angel One order-update WebSocket events to orders as they happen."

    def handle(self, *args, **options):
        from orders.updates import OrderUpdateListener

        listener = OrderUpdateListener()

        def stop(signum, frame):
            self.stdout.write("order updates: stopping")
            listener.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"order updates: following {listener.url}")
        listener.run()
