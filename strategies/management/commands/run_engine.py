"""``manage.py run_engine``: bootstrap history, then run the strategies on live candles.

Stops cleanly on SIGTERM / Ctrl-C after the current step. See strategies/engine.py.
"""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand

from strategies.bootstrap import LOADED, SymbolResult
from strategies.engine import Engine

BAR_WIDTH = 30


class ProgressBar:
    """``[#####.....] 37/50 loaded 35, warming up 2`` on one line (a tty), or one line
    per tenth of the way (a log file)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty() if hasattr(stream, "isatty") else False
        self.loaded = 0
        self.warming = 0
        self.started = time.monotonic()
        self._last_tenth = -1

    def __call__(self, done: int, total: int, result: SymbolResult) -> None:
        if result.state == LOADED:
            self.loaded += 1
        else:
            self.warming += 1
        filled = int(BAR_WIDTH * done / max(total, 1))
        line = (
            f"history [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:>3}/{total} "
            f"loaded {self.loaded}, warming up {self.warming}  "
            f"{time.monotonic() - self.started:5.1f}s"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == total else ""))
            self.stream.flush()
            return
        tenth = done * 10 // max(total, 1)
        if tenth != self._last_tenth or done == total:
            self._last_tenth = tenth
            self.stream.write(line + "\n")
            self.stream.flush()


class Command(BaseCommand):
    help = "Run the strategy engine: history bootstrap, live candles, strategies, risk gate."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-bootstrap", action="store_true",
                            help="skip loading history (strategies start from live candles)")
        parser.add_argument("--consumer", default=None,
                            help="consumer name in the tick stream group (default engine@host)")

    def handle(self, *args, **options) -> None:
        out = self.stdout._out if hasattr(self.stdout, "_out") else sys.stdout
        engine = Engine(consumer=options["consumer"], progress=ProgressBar(out))
        engine.install_signal_handlers()
        self.stdout.write(
            f"engine: interval {engine.interval}, bootstrap "
            f"{'off' if options['no_bootstrap'] else engine.bootstrapper.count} candles"
        )
        engine.start(bootstrap=not options["no_bootstrap"])
        self.stdout.write(engine.bootstrapper.state.summary())
        self.stdout.write(
            f"engine: running {len(engine.runners)} strategies "
            f"({', '.join(sorted(engine.runners)) or 'none'}); Ctrl-C stops"
        )
        engine.run_forever()
        self.stdout.write("engine: stopped")
