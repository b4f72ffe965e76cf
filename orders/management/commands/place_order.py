"""Place one order by hand, through the same exactly-once path as the strategies' orders.

    manage.py place_order SBIN-EQ BUY --quantity 1
    manage.py place_order SBIN-EQ SELL --limit 812.50 --wait 10

The kill switch, the order deadline and the shared rate limiter apply as to any intent;
the strategies' risk gate does not (this is the operator's own decision).
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from feeds.models import Instrument
from orders.intents import create_intent
from orders.models import OrderIntent

SETTLED = {"accepted", "open", "complete", "rejected", "cancelled", "expired"}


class Command(BaseCommand):
    help = "Place one BUY or SELL order for a watchlist symbol (paper or live, as configured)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("symbol", help="trading symbol, e.g. SBIN-EQ")
        parser.add_argument("side", choices=("BUY", "SELL", "buy", "sell"))
        parser.add_argument("--quantity", type=int, default=1)
        parser.add_argument("--limit", type=float, help="limit price in rupees (default MARKET)")
        parser.add_argument("--exchange", default="NSE")
        parser.add_argument("--wait", type=float, default=15.0,
                            help="seconds to wait for the broker's answer (0: don't wait)")

    def handle(self, *args, symbol: str, side: str, quantity: int, limit: float | None,
               exchange: str, wait: float, **options) -> None:
        instrument = Instrument.objects.filter(exchange=exchange, symbol=symbol).first()
        if instrument is None:
            raise CommandError(f"no instrument {exchange}:{symbol}; see the admin's Instruments")
        try:
            intent = create_intent(
                instrument, side, quantity,
                order_type="LIMIT" if limit is not None else "MARKET", price=limit,
                strategy="manual", reason="placed from the command line",
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"intent {intent.ordertag}: {side.upper()} {quantity} {symbol} queued")

        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            intent = OrderIntent.objects.get(pk=intent.pk)
            if intent.status in SETTLED:
                break
            time.sleep(0.2)
        self.stdout.write(f"intent {intent.ordertag}: {intent.status}")
        if intent.status in ("rejected", "cancelled", "expired"):
            raise CommandError(f"not placed: {intent.status} (see the admin's order intents)")
