"""Benchmark broker.codec.decode against a straightforward SDK-style parser.

    .venv/bin/python bench/bench_codec.py [--quick]

Two baselines: the way the official Python SDK parses packets (runtime.md §7): one
``struct.unpack`` per field on a slice, the token read character by character, a dict
per packet; and the same with the token read in one ``split`` ("plain"), the
straightforward parser the 3x target is about. All run over the same frames (50
tokens, varying values) on one core; each figure is the median of 5 runs. Prints a table and writes
bench/results/codec.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker import codec  # noqa: E402
from broker.codec import BookLevel, Depth20Tick, QuoteTick, SnapQuoteTick  # noqa: E402
from broker.watchlist import DEFAULT_WATCHLIST  # noqa: E402

RUNS = 5


# --- the baseline: SDK style ---------------------------------------------------------


def _field(fmt: str, frame: bytes, start: int, end: int):
    return struct.unpack(fmt, frame[start:end])[0]


def _sdk_token(raw: bytes) -> str:
    token = ""
    for i in range(len(raw)):
        if chr(raw[i]) == "\x00":
            return token
        token += chr(raw[i])
    return token


def sdk_style_decode(frame: bytes) -> dict:
    return _per_field_decode(frame, _sdk_token(frame[2:27]))


def plain_decode(frame: bytes) -> dict:
    """The straightforward parser: per-field ``struct.unpack``, the token in one split."""
    return _per_field_decode(frame, frame[2:27].split(b"\0", 1)[0].decode("ascii"))


def _per_field_decode(frame: bytes, token: str) -> dict:
    mode = _field("<B", frame, 0, 1)
    tick = {
        "subscription_mode": mode,
        "exchange_type": _field("<B", frame, 1, 2),
        "token": token,
    }
    if mode == 4:
        tick["exchange_timestamp"] = _field("<q", frame, 27, 35)
        tick["packet_received_time"] = _field("<q", frame, 35, 43)
        for side, base in (("bids", 43), ("asks", 243)):
            levels = []
            for i in range(20):
                at = base + 10 * i
                levels.append(
                    {
                        "quantity": _field("<i", frame, at, at + 4),
                        "price": _field("<i", frame, at + 4, at + 8),
                        "orders": _field("<h", frame, at + 8, at + 10),
                    }
                )
            tick[side] = levels
        return tick
    tick["sequence_number"] = _field("<q", frame, 27, 35)
    tick["exchange_timestamp"] = _field("<q", frame, 35, 43)
    tick["last_traded_price"] = _field("<q", frame, 43, 51)
    if mode in (2, 3):
        tick["last_traded_quantity"] = _field("<q", frame, 51, 59)
        tick["average_traded_price"] = _field("<q", frame, 59, 67)
        tick["volume_trade_for_the_day"] = _field("<q", frame, 67, 75)
        tick["total_buy_quantity"] = _field("<d", frame, 75, 83)
        tick["total_sell_quantity"] = _field("<d", frame, 83, 91)
        tick["open_price_of_the_day"] = _field("<q", frame, 91, 99)
        tick["high_price_of_the_day"] = _field("<q", frame, 99, 107)
        tick["low_price_of_the_day"] = _field("<q", frame, 107, 115)
        tick["closed_price"] = _field("<q", frame, 115, 123)
    if mode == 3:
        tick["last_traded_timestamp"] = _field("<q", frame, 123, 131)
        tick["open_interest"] = _field("<q", frame, 131, 139)
        tick["open_interest_change_percentage"] = _field("<d", frame, 139, 147)
        bids, asks = [], []
        for i in range(10):
            at = 147 + 20 * i
            level = {
                "flag": _field("<h", frame, at, at + 2),
                "quantity": _field("<q", frame, at + 2, at + 10),
                "price": _field("<q", frame, at + 10, at + 18),
                "no of orders": _field("<h", frame, at + 18, at + 20),
            }
            (bids if i < 5 else asks).append(level)
        tick["best_5_buy_data"], tick["best_5_sell_data"] = bids, asks
        tick["upper_circuit_limit"] = _field("<q", frame, 347, 355)
        tick["lower_circuit_limit"] = _field("<q", frame, 355, 363)
        tick["52_week_high_price"] = _field("<q", frame, 363, 371)
        tick["52_week_low_price"] = _field("<q", frame, 371, 379)
    return tick


# --- frames ------------------------------------------------------------------------


def frames_for(mode: int, count: int, rnd: random.Random) -> list[bytes]:
    tokens = [token for _, token, _ in DEFAULT_WATCHLIST]
    frames = []
    for n in range(count):
        token, price = rnd.choice(tokens), rnd.randint(10_000, 1_000_000)
        ts = 1_710_909_637_000 + n
        levels5 = tuple(BookLevel(rnd.randint(1, 999), price + i, i + 1) for i in range(10))
        if mode == 1:
            frames.append(codec.encode_ltp(1, token, n, ts, price))
            continue
        quote = (n, ts, price, 10, price, 123_456, 5000.0, 6000.0, price, price, price, price)
        if mode == 2:
            frames.append(codec.encode(QuoteTick(2, 1, token, *quote)))
        elif mode == 3:
            frames.append(
                codec.encode(
                    SnapQuoteTick(
                        3,
                        1,
                        token,
                        *quote,
                        ts,
                        77,
                        0.5,
                        levels5[:5],
                        levels5[5:],
                        1,
                        2,
                        3,
                        4,
                    )
                )
            )
        else:
            levels20 = tuple(BookLevel(rnd.randint(1, 999), price + i, i) for i in range(40))
            frames.append(
                codec.encode(
                    Depth20Tick(
                        4,
                        1,
                        token,
                        ts,
                        ts + 5,
                        levels20[:20],
                        levels20[20:],
                    )
                )
            )
    return frames


def rate(parse, frames: list[bytes]) -> float:
    """Frames per second for one pass (the loop a feed's on-message handler runs)."""
    started = time.perf_counter()
    for frame in frames:
        parse(frame)
    return len(frames) / (time.perf_counter() - started)


def measure(frames: list[bytes]) -> tuple[list[float], list[float], list[float]]:
    """``RUNS`` passes of each parser, interleaved so that a noisy neighbour on a shared
    machine slows them alike: ours, the SDK-style one, the plain per-field one."""
    codec.decode(frames[0])  # warm the token cache, as a running feed has it
    ours, baseline, plain = [], [], []
    for _ in range(RUNS):
        ours.append(rate(codec.decode, frames))
        baseline.append(rate(sdk_style_decode, frames))
        plain.append(rate(plain_decode, frames))
    return ours, baseline, plain


def main(quick: bool = False) -> dict:
    rnd = random.Random(7)
    scale = 10 if quick else 1
    sizes = {1: 300_000, 2: 200_000, 3: 60_000, 4: 30_000}
    names = {1: "ltp", 2: "quote", 3: "snap_quote", 4: "depth_20"}
    results: dict[str, dict[str, float]] = {}
    for mode, count in sizes.items():
        frames = frames_for(mode, count // scale, rnd)
        ours, baseline, plain = measure(frames)
        results[names[mode]] = {
            "frame_bytes": len(frames[0]),
            "decode_per_s": round(statistics.median(ours)),
            "sdk_style_per_s": round(statistics.median(baseline)),
            "ratio": round(statistics.median(ours) / statistics.median(baseline), 2),
            "plain_per_s": round(statistics.median(plain)),
            "plain_ratio": round(statistics.median(ours) / statistics.median(plain), 2),
            "decode_best_per_s": round(max(ours)),
            "sdk_style_best_per_s": round(max(baseline)),
        }

    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": RUNS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "statistic": "median frames per second, one core",
        "modes": results,
    }
    print(
        f"{'mode':<11} {'bytes':>5} {'decode/s':>12} {'sdk-style/s':>12} {'ratio':>6}"
        f" {'plain/s':>12} {'ratio':>6} {'best decode/s':>14}"
    )
    for name, row in results.items():
        print(
            f"{name:<11} {row['frame_bytes']:>5} {row['decode_per_s']:>12,} "
            f"{row['sdk_style_per_s']:>12,} {row['ratio']:>5.2f}x "
            f"{row['plain_per_s']:>12,} {row['plain_ratio']:>5.2f}x "
            f"{row['decode_best_per_s']:>14,}"
        )
    print(
        f"(median of {RUNS} interleaved runs; load average {report['load_average_1m']}"
        f" on {report['cpus']} CPUs)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "codec.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
