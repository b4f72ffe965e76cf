"""Run every benchmark in turn: `python -m bench [--quick]` (or `make bench`).

Each one prints its figures and writes them to bench/results/<name>.json. They start
their own Redis and simulator on loopback; run them on a quiet machine, the figures
are medians but two shared cores are noisy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("bench_codec", "bench_feed", "bench_engine", "bench_orders")


def main(argv: list[str]) -> int:
    quick = ["--quick"] if "--quick" in argv else []
    failed = []
    for name in BENCHES:
        print(f"\n=== {name} ===", flush=True)
        args = [sys.executable, str(HERE / f"{name}.py")]
        if name != "bench_codec":
            args += quick
        if subprocess.run(args, cwd=HERE.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
