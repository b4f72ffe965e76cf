"""`make run`: the whole bot in one terminal, run by honcho from the Procfile.

Starts an embedded Redis when REDIS_URL is unset, migrates, creates the admin user,
then hands every process in the Procfile to honcho's manager, which prefixes their
output, and stops them all on Ctrl-C. In paper mode the simulator runs too; in live
mode it is left out. Once the feed has prices, the status summary is printed once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 120


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def _ready(status: dict) -> bool:
    """Prices flow and every symbol has its history or is marked warming up."""
    total = status.get("historical_candles_total") or 0
    settled = status.get("historical_candles_loaded", 0) + status.get("symbols_warming_up", 0)
    return bool(status.get("symbols_flowing")) and total > 0 and settled >= total


def _print_status_when_ready(env: dict[str, str], stop: threading.Event) -> None:
    """Wait until the bot is up, then print the bot_status summary once."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not stop.is_set() and time.monotonic() < deadline:
        result = subprocess.run(
            [sys.executable, "manage.py", "bot_status", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        if result.returncode == 0 and _ready(json.loads(result.stdout)):
            break
        if result.returncode != 0:
            sys.stderr.write(f"bot_status failed: {result.stderr[-500:]}\n")
        stop.wait(3)
    if stop.is_set():
        return
    summary = subprocess.run(
        [sys.executable, "manage.py", "bot_status"], cwd=ROOT, env=env,
        capture_output=True, text=True,
    )
    web = f"http://{env.get('WEB_HOST', '127.0.0.1')}:{env.get('WEB_PORT', '8000')}/admin/"
    flower = f"http://{env.get('FLOWER_HOST', '127.0.0.1')}:{env.get('FLOWER_PORT', '5555')}/"
    sys.stdout.write(
        f"\n{summary.stdout}\n"
        f"  admin                  {web}\n"
        f"  flower                 {flower}\n"
        "  Ctrl-C stops everything.\n\n"
    )
    sys.stdout.flush()


def main() -> int:
    os.chdir(ROOT)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    env["PYTHONUNBUFFERED"] = "1"
    # Processes find each other's tools in this virtualenv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    var_dir = Path(env.get("TRADEBOT_VAR_DIR", ROOT / "var"))
    paper = env.get("TRADEBOT_MODE", "paper") == "paper"

    redis_server = None
    if not env.get("REDIS_URL"):
        from tradebot.embedded_redis import EmbeddedRedis, free_port

        port = int(env.get("EMBEDDED_REDIS_PORT", "0")) or free_port()
        redis_server = EmbeddedRedis(var_dir / "redis", port=port, persist=True).start()
        env["REDIS_URL"] = redis_server.url
        url_file = var_dir / "redis" / "url"
        url_file.write_text(redis_server.url + "\n")
        print(f"embedded Redis on {redis_server.url} (data in {var_dir / 'redis'})")

    try:
        _manage("migrate", "--no-input", "-v", "0", env=env)
        _manage("ensure_admin", env=env)
        _manage("collectstatic", "--no-input", "-v", "0", env=env)
        processes = parse_procfile((ROOT / "Procfile").read_text()).processes
        if not paper:
            processes.pop("simulator", None)
        manager = Manager(Printer(sys.stdout))
        for name, command in processes.items():
            manager.add_process(name, command, env=env, cwd=str(ROOT))
        stop = threading.Event()
        threading.Thread(
            target=_print_status_when_ready, args=(env, stop), daemon=True
        ).start()
        manager.loop()
        stop.set()
        return manager.returncode or 0
    finally:
        if redis_server is not None:
            redis_server.stop()
            (var_dir / "redis" / "url").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
