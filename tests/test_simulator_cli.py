"""Starting the simulator from the command line, and `manage.py chaos` against it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from simulator.testing import start_simulator

ROOT = Path(__file__).resolve().parent.parent
BANNER = re.compile(r"REST http://127\.0\.0\.1:(\d+)")


def run_until_banner(argv: list[str], env: dict[str, str] | None = None):
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # type: ignore[union-attr]
        match = BANNER.search(line)
        if match:
            return process, int(match.group(1))
    process.wait(5)
    raise AssertionError(f"no banner; exit code {process.returncode}")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(10)


def scrip_master(port: int) -> list:
    url = f"http://127.0.0.1:{port}/OpenAPI_File/files/OpenAPIScripMaster.json"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_python_dash_m_simulator_serves_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process, port = run_until_banner(
        [sys.executable, "-m", "simulator", "--port", "0", "--seed", "7", "--tick-rate", "3"],
        env,
    )
    try:
        rows = scrip_master(port)
    finally:
        code = stop(process)

    assert len(rows) == 50
    assert code == 0


def test_manage_py_run_simulator_serves_until_sigterm():
    from tests.conftest import subprocess_env

    process, port = run_until_banner(
        [sys.executable, "manage.py", "run_simulator", "--port", "0"], subprocess_env()
    )
    try:
        rows = scrip_master(port)
    finally:
        code = stop(process)

    assert rows[0]["exch_seg"] == "NSE"
    assert code == 0


def test_chaos_arms_a_fault_and_prints_the_answer():
    with start_simulator(tick_rate=1) as sim:
        out = StringIO()

        call_command("chaos", "rest_error", "--route", "getCandleData", "--kind", "AB1004",
                     "--count", "2", "--url", sim.rest_url, stdout=out)

        answer = json.loads(out.getvalue())
        assert answer["ok"] is True and answer["count"] == 2
        assert sim.fault_log()[-1]["fault"] == "rest_error"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["reject_orders", "--count", "2", "--text", "RMS: margin"],
         {"count": 2, "text": "RMS: margin"}),
        (["lose_order_response", "--mode", "hang", "--hang-seconds", "4"],
         {"mode": "hang", "hang_seconds": 4.0}),
        (["expire_sessions", "--drop-streams"], {"sessions": 0, "connections": 0}),
        (["drop_ws", "--include-order-updates"], {"connections": 0}),
        (["restart", "--no-keep-sessions"], {"keep_sessions": False}),
    ],
)
def test_chaos_passes_every_fault_option(argv, expected):
    with start_simulator(tick_rate=1) as sim:
        out = StringIO()

        call_command("chaos", *argv, "--url", sim.rest_url, stdout=out)

        answer = json.loads(out.getvalue())
        assert answer["ok"] is True and answer["fault"] == argv[0]
        assert expected.items() <= answer.items()
        logged = [e for e in sim.fault_log() if e["event"] == "applied"][-1]
        assert logged["fault"] == argv[0] and expected.items() <= logged.items()


def test_chaos_says_clearly_when_the_simulator_is_not_running():
    with start_simulator(tick_rate=1) as sim:
        url = sim.rest_url  # a port that was just ours, now closed

    with pytest.raises(CommandError, match="not running"):
        call_command("chaos", "drop_ws", "--url", url)


def test_chaos_reports_a_refused_fault():
    with start_simulator(tick_rate=1) as sim:
        with pytest.raises(CommandError, match="kind must be"):
            call_command("chaos", "bad_frames", "--kind", "garbage", "--url", sim.rest_url)


def test_engine_step_options_reach_the_config():
    from simulator.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(["--engine-interval", "0.01", "--engine-step-ticks", "20"])
    config = config_from_args(args)

    assert (config.engine_interval, config.engine_step_ticks) == (0.01, 20)
    assert config_from_args(build_parser().parse_args([])).engine_interval == 0.02
