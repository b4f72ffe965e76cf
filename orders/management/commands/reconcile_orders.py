"""``manage.py reconcile_orders``: one reconciliation pass now, printed as a summary."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Reconcile orders with the broker's order book, trade book and positions."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument(
            "--no-positions", action="store_true", help="skip the comparison with broker positions"
        )

    def handle(self, *args, **options):
        from orders.reconcile import reconcile

        summary = reconcile(reason="command", positions=not options["no_positions"])
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        for key, value in summary.items():
            self.stdout.write(f"{key:>12}  {value}")
