"""``manage.py chaos FAULT [options]``: every parameter of POST /_sim/faults has a flag.

Arms a fault on the running simulator through its control endpoint and prints the
simulator's answer. Examples::

    manage.py chaos drop_ws
    manage.py chaos stall --seconds 15
    manage.py chaos rest_error --route getCandleData --kind AB1004 --count 3
    manage.py chaos restart --down-seconds 5 --no-keep-sessions
    manage.py chaos lose_order_response --mode hang --hang-seconds 20
    manage.py chaos expire_sessions --drop-streams
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulator.faults import FAULTS


class Command(BaseCommand):
    help = "Inject a fault into the running simulator (see /_sim/faults)."

    def add_arguments(self, parser):
        parser.add_argument("fault", choices=FAULTS)
        parser.add_argument("--seconds", type=float)
        parser.add_argument("--count", type=int)
        parser.add_argument("--route")
        parser.add_argument("--kind")
        parser.add_argument("--status", type=int)
        parser.add_argument("--delay-seconds", type=float)
        parser.add_argument("--down-seconds", type=float)
        parser.add_argument("--mode", help="lose_order_response: drop or hang")
        parser.add_argument("--hang-seconds", type=float, help="lose_order_response --mode hang")
        parser.add_argument("--text", help="reject_orders: the rejection reason")
        parser.add_argument(
            "--keep-sessions",
            action=argparse.BooleanOptionalAction,
            help="restart: keep (default) or end every session",
        )
        parser.add_argument(
            "--include-order-updates",
            action="store_true",
            default=None,
            help="drop_ws: also drop /smart-order-update connections",
        )
        parser.add_argument(
            "--drop-streams",
            action="store_true",
            default=None,
            help="expire_sessions: also drop every WebSocket",
        )
        parser.add_argument("--url", help="simulator root, default http://SIMULATOR_HOST:PORT")

    def handle(self, *args, **options):
        root = options["url"] or (
            f"http://{getattr(settings, 'SIMULATOR_HOST', '127.0.0.1')}:"
            f"{getattr(settings, 'SIMULATOR_PORT', 8600)}"
        )
        body = {"fault": options["fault"]}
        for name in ("seconds", "count", "route", "kind", "status", "delay_seconds",
                     "down_seconds", "mode", "hang_seconds", "text", "keep_sessions",
                     "include_order_updates", "drop_streams"):
            if options.get(name) is not None:
                body[name] = options[name]
        root = root.rstrip("/")
        url = (root if root.endswith("/_sim") else root + "/_sim") + "/faults"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CommandError(
                f"simulator refused the fault: {exc.read().decode(errors='replace')}"
            ) from exc
        except OSError as exc:
            raise CommandError(
                f"the simulator is not running at {root} ({exc}); start it with "
                "`manage.py run_simulator` or pass --url"
            ) from exc
        self.stdout.write(json.dumps(answer, indent=2))
