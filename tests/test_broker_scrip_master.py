"""Scrip master: typed instruments, two indexes, a one-day download cache, loud failures."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from broker.scrip_master import CACHE_NAME, Instrument, ScripMaster, ScripMasterError

ROWS = [
    {
        "token": "3045",
        "symbol": "SBIN-EQ",
        "name": "SBIN",
        "expiry": "",
        "strike": "-1.000000",
        "lotsize": "1",
        "instrumenttype": "",
        "exch_seg": "NSE",
        "tick_size": "5.000000",
    },
    {
        "token": "3045",
        "symbol": "SBIN",
        "name": "SBIN",
        "expiry": "",
        "strike": "-1.000000",
        "lotsize": "1",
        "instrumenttype": "",
        "exch_seg": "BSE",
        "tick_size": "5.000000",
    },
    {
        "token": "99926000",
        "symbol": "Nifty 50",
        "name": "NIFTY",
        "expiry": "",
        "strike": "0.000000",
        "lotsize": "1",
        "instrumenttype": "AMXIDX",
        "exch_seg": "NSE",
        "tick_size": "0.000000",
    },
    {
        "token": "43210",
        "symbol": "NIFTY26DEC2424500CE",
        "name": "NIFTY",
        "expiry": "26DEC2024",
        "strike": "2450000.000000",
        "lotsize": "75",
        "instrumenttype": "OPTIDX",
        "exch_seg": "NFO",
        "tick_size": "5.000000",
    },
]


def write(tmp_path, rows) -> str:
    path = tmp_path / "master.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_it_types_every_field(tmp_path):
    master = ScripMaster.load(write(tmp_path, ROWS))

    option = master.by_token("NFO", "43210")
    assert option == Instrument(
        exchange="NFO",
        token="43210",
        symbol="NIFTY26DEC2424500CE",
        name="NIFTY",
        instrument_type="OPTIDX",
        lot_size=75,
        tick_size_paise=5,
        expiry=date(2024, 12, 26),
        strike=24500.0,
    )
    assert master.by_token("NSE", "99926000").tick_size_paise == 0
    assert master.by_token("NSE", "3045").strike is None


def test_it_indexes_by_exchange_and_token_and_by_exchange_and_symbol(tmp_path):
    master = ScripMaster.load(write(tmp_path, ROWS))

    assert len(master) == 4
    assert master.by_token("NSE", "3045").symbol == "SBIN-EQ"
    assert master.by_token("BSE", "3045").symbol == "SBIN"
    assert master.by_symbol("NSE", "Nifty 50").token == "99926000"
    assert master.by_symbol("NSE", "SBIN") is None


@pytest.mark.parametrize(
    "content, reason",
    [
        ("[{", "not valid JSON"),
        ('{"token": "1"}', "not an array"),
        (json.dumps([ROWS[0], {"symbol": "X", "exch_seg": "NSE"}]), "entry 1: missing token"),
        (json.dumps([{**ROWS[3], "expiry": "2024-12-26"}]), "entry 0: expiry"),
        (json.dumps([{**ROWS[0], "lotsize": "many"}]), "entry 0: lotsize"),
        (json.dumps(["SBIN"]), "entry 0: entry is a str"),
    ],
)
def test_a_malformed_file_is_a_clear_error(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)

    with pytest.raises(ScripMasterError, match=reason):
        ScripMaster.load(str(path))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ScripMasterError, match="cannot be read"):
        ScripMaster.load(str(tmp_path / "nope.json"))


@pytest.fixture
def served():
    """An HTTP server handing out ``state['body']`` and counting downloads."""
    state = {"body": json.dumps(ROWS).encode(), "hits": 0, "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["hits"] += 1
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/{CACHE_NAME}"
    yield state
    server.shutdown()
    server.server_close()


def test_a_download_is_cached_for_a_day(tmp_path, served):
    first = ScripMaster.load(served["url"], cache_dir=tmp_path)
    second = ScripMaster.load(served["url"], cache_dir=tmp_path)

    assert served["hits"] == 1
    assert len(first) == len(second) == 4
    assert (tmp_path / CACHE_NAME).exists()


def test_a_day_old_cache_is_downloaded_again(tmp_path, served):
    ScripMaster.load(served["url"], cache_dir=tmp_path)
    old = time.time() - 25 * 3600
    os.utime(tmp_path / CACHE_NAME, (old, old))
    served["body"] = json.dumps(ROWS[:1]).encode()

    master = ScripMaster.load(served["url"], cache_dir=tmp_path)

    assert served["hits"] == 2 and len(master) == 1


def test_a_bad_download_keeps_the_previous_copy(tmp_path, served):
    ScripMaster.load(served["url"], cache_dir=tmp_path)
    old = time.time() - 25 * 3600
    os.utime(tmp_path / CACHE_NAME, (old, old))
    served["body"] = b'[{"token": "1"'

    with pytest.raises(ScripMasterError, match="not valid JSON"):
        ScripMaster.load(served["url"], cache_dir=tmp_path)
    assert len(ScripMaster.load(str(tmp_path / CACHE_NAME))) == 4


def test_an_http_error_is_a_clear_error(tmp_path, served):
    served["status"] = 503

    with pytest.raises(ScripMasterError, match="HTTP 503"):
        ScripMaster.load(served["url"], cache_dir=tmp_path)
