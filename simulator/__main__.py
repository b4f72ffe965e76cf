"""``python -m simulator [--host H] [--port 8600] [--seed N] [--tick-rate R]
[--engine-interval S]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from simulator.config import SimConfig
from simulator.server import Simulator

logger = logging.getLogger("simulator")


def build_parser(defaults: SimConfig | None = None) -> argparse.ArgumentParser:
    defaults = defaults or SimConfig(port=8600)
    parser = argparse.ArgumentParser(prog="simulator", description=__doc__)
    add_arguments(parser, defaults)
    return parser


def add_arguments(parser: argparse.ArgumentParser, defaults: SimConfig) -> None:
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--tick-rate", type=float, default=defaults.tick_rate,
                        help="market updates per second per instrument")
    parser.add_argument("--replay-csv", default=defaults.replay_csv,
                        help="drive the first instrument from a candles CSV")
    parser.add_argument("--market-hours", action="store_true",
                        default=not defaults.market_always_open,
                        help="tick only in NSE hours instead of around the clock")
    parser.add_argument("--no-rate-limits", action="store_true",
                        default=not defaults.enforce_rate_limits)
    parser.add_argument("--engine-interval", type=float, default=defaults.engine_interval,
                        help="longest market engine step, s (shorter at high total rates)")
    parser.add_argument("--engine-step-ticks", type=int, default=defaults.engine_step_ticks,
                        help="updates one engine step aims at; fewer is smaller bursts")


def config_from_args(args: argparse.Namespace, base: SimConfig | None = None) -> SimConfig:
    return (base or SimConfig()).with_overrides(
        host=args.host, port=args.port, seed=args.seed, tick_rate=args.tick_rate,
        replay_csv=args.replay_csv, market_always_open=not args.market_hours,
        enforce_rate_limits=not args.no_rate_limits,
        engine_interval=args.engine_interval, engine_step_ticks=args.engine_step_ticks,
    )


async def serve(config: SimConfig) -> None:
    """Run until SIGINT/SIGTERM, then close every connection and stop."""
    sim = Simulator(config)
    await sim.start()
    print(f"simulator: REST http://{config.host}:{sim.port}  "
          f"WS ws://{config.host}:{sim.port}/smart-stream  "
          f"control http://{config.host}:{sim.port}/_sim", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("simulator stopping")
    await sim.stop()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    args = build_parser().parse_args(argv)
    asyncio.run(serve(config_from_args(args)))


if __name__ == "__main__":
    main()
