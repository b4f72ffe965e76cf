"""`make run`'s launcher: the whole stack from nothing, and Ctrl-C leaves no orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradebot.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment carries ``marker``: everything the launcher started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find orphans")
def test_the_stack_starts_prints_its_summary_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        TRADEBOT_VAR_DIR=str(tmp_path / "var"),
        TRADEBOT_SQLITE_PATH=str(tmp_path / "var" / "bot.sqlite3"),
        WEB_PORT=str(free_port()),
        FLOWER_PORT=str(free_port()),
        SIMULATOR_PORT=str(free_port()),
        ADMIN_PASSWORD="launcher-test",
        LAUNCHER_TEST_MARKER=str(tmp_path),
    )
    log_path = tmp_path / "stack.log"
    with open(log_path, "wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "tradebot.stack"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything." not in log_path.read_text(errors="replace"):
            assert stack.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(1)
        output = log_path.read_text(errors="replace")
        assert "embedded Redis on redis://127.0.0.1:" in output
        assert "WebSocket              CONNECTED" in output
        assert "historical candles     50/50 loaded" in output

        # A second shell finds the embedded Redis without being told where it is.
        status = subprocess.run(
            [sys.executable, "manage.py", "bot_status", "--json"], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True,
        )
        assert json.loads(status.stdout)["symbols_flowing"] > 0
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(40)
        except subprocess.TimeoutExpired:
            stack.kill()
            raise

    time.sleep(1)
    leftovers = _processes_with(f"LAUNCHER_TEST_MARKER={tmp_path}")
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], f"orphans after Ctrl-C: {leftovers}"
    assert not (tmp_path / "var" / "redis" / "url").exists()
