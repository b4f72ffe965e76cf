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


def _processes_with(marker: str, command: str = "") -> list[int]:
    """Pids whose environment carries ``marker`` (everything the launcher started) and,
    when given, whose command line contains ``command``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            if command.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


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

        # A crashed process is started again; the bot does not stop.
        marker = f"LAUNCHER_TEST_MARKER={tmp_path}"
        [feed] = _processes_with(marker, "manage.py run_feed")
        os.kill(feed, signal.SIGKILL)
        new_feed = _wait_for(
            lambda: [p for p in _processes_with(marker, "manage.py run_feed") if p != feed],
            30, "the feed to be started again",
        )[0]
        import redis

        from tradebot import keys

        client = redis.Redis.from_url(
            (tmp_path / "var" / "redis" / "url").read_text().strip(), decode_responses=True
        )
        _wait_for(
            lambda: client.hget(keys.FEED_STATE, "pid") == str(new_feed)
            and client.hget(keys.FEED_STATE, "state") == "CONNECTED",
            30, "the new feed to connect",
        )

        # A second launcher on the same folder is refused and leaves the first alone.
        second = subprocess.run(
            [sys.executable, "-m", "tradebot.stack"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 1
        assert "tradebot is already running from this folder" in second.stderr
        assert (tmp_path / "var" / "redis" / "url").exists()

        # The embedded Redis is supervised too: killed, it comes back on the same port
        # and ticks reach the stream again.
        def redis_pid():
            try:
                return client.info("server")["process_id"]
            except redis.RedisError:
                return None

        killed = redis_pid()
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: redis_pid() not in (None, killed), 30, "Redis to be started again")
        stream = keys.TICKS_STREAM.format(exchange_type=1)

        def newest_tick_id():
            try:
                newest = client.xrevrange(stream, count=1)
            except redis.RedisError:
                return None
            return newest[0][0] if newest else None

        before = _wait_for(newest_tick_id, 30, "ticks in the restarted Redis")
        _wait_for(lambda: (newest_tick_id() or before) != before, 30, "fresh ticks after it")
        assert stack.poll() is None
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


def test_a_bad_setting_stops_the_launcher_with_one_line_naming_it(tmp_path):
    env = {**os.environ, "TRADEBOT_VAR_DIR": str(tmp_path), "FEED_MODE": "7"}

    result = subprocess.run(
        [sys.executable, "-m", "tradebot.stack"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == "tradebot cannot start: FEED_MODE='7' must be one of 1, 2, 3"


def test_live_mode_without_credentials_names_every_missing_one(tmp_path):
    env = {**os.environ, "TRADEBOT_VAR_DIR": str(tmp_path), "TRADEBOT_MODE": "live",
           "DJANGO_SECRET_KEY": "test-only"}
    for name in ("ANGEL_CLIENT_CODE", "ANGEL_PIN", "ANGEL_API_KEY", "ANGEL_TOTP_SECRET"):
        env.pop(name, None)

    result = subprocess.run(
        [sys.executable, "-m", "tradebot.stack"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 1
    assert "ANGEL_CLIENT_CODE, ANGEL_PIN, ANGEL_API_KEY, ANGEL_TOTP_SECRET" in result.stderr


def test_an_external_redis_that_does_not_answer_is_named_before_anything_starts(tmp_path):
    env = {**os.environ, "TRADEBOT_VAR_DIR": str(tmp_path),
           "REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}

    result = subprocess.run(
        [sys.executable, "-m", "tradebot.stack"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 1
    assert "does not answer" in result.stderr and "check REDIS_URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "run" / "supervisord.conf").exists()


def test_a_port_another_program_holds_is_named_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(TRADEBOT_VAR_DIR=str(tmp_path), WEB_PORT=str(port))

        result = subprocess.run(
            [sys.executable, "-m", "tradebot.stack"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=60,
        )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"tradebot cannot start: port {port} (WEB_PORT) is in use, perhaps by another "
        "tradebot; stop it or set WEB_PORT"
    )
