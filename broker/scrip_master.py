"""Angel One's instrument list (the "scrip master"), loaded, cached for a day and indexed.

The file is one JSON array of flat objects whose values are all strings (smartapi.md §4):
tick size in paise, option strikes times 100, expiry as ``26DEC2024``. ``Instrument``
holds them typed. ``ScripMaster.load`` reads a path or downloads a URL; a download is
kept under the cache directory and reused while it is less than a day old.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import requests

log = logging.getLogger(__name__)

CACHE_SECONDS = 24 * 3600
CACHE_NAME = "OpenAPIScripMaster.json"
REQUIRED_FIELDS = ("token", "symbol", "exch_seg")


class ScripMasterError(ValueError):
    """The scrip master could not be fetched or read. The caller keeps the previous copy
    (or, with none, stops and names the file); nothing trades on a half-read list."""


@dataclass(frozen=True)
class Instrument:
    exchange: str  # exch_seg: NSE, BSE, NFO, ...
    token: str
    symbol: str
    name: str
    instrument_type: str  # "" cash, AMXIDX, FUTIDX, OPTSTK, ...
    lot_size: int
    tick_size_paise: int
    expiry: date | None
    strike: float | None  # rupees, options only

    @property
    def key(self) -> tuple[str, str]:
        return (self.exchange, self.token)


def _number(row: dict, field: str, default: str = "0") -> float:
    raw = str(row.get(field) or default).strip()
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{field}={raw!r} is not a number") from None


def _expiry(raw: str) -> date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return datetime.strptime(raw.title(), "%d%b%Y").date()
    except ValueError:
        raise ValueError(f"expiry={raw!r} is not like 26DEC2024") from None


def parse_row(row: dict) -> Instrument:
    """One scrip master object as an ``Instrument``; ``ValueError`` names the bad field."""
    if not isinstance(row, dict):
        raise ValueError(f"entry is a {type(row).__name__}, not an object")
    missing = [name for name in REQUIRED_FIELDS if not str(row.get(name) or "").strip()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    strike = _number(row, "strike", "-1")
    return Instrument(
        exchange=str(row["exch_seg"]).strip(),
        token=str(row["token"]).strip(),
        symbol=str(row["symbol"]).strip(),
        name=str(row.get("name") or "").strip(),
        instrument_type=str(row.get("instrumenttype") or "").strip(),
        lot_size=int(_number(row, "lotsize", "1")),
        tick_size_paise=round(_number(row, "tick_size")),
        expiry=_expiry(str(row.get("expiry") or "")),
        strike=strike / 100 if strike > 0 else None,
    )


class ScripMaster:
    """Instruments indexed by (exchange, token) and by (exchange, symbol)."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_token: dict[tuple[str, str], Instrument] = {}
        self._by_symbol: dict[tuple[str, str], Instrument] = {}
        for instrument in instruments:
            self._by_token[instrument.key] = instrument
            self._by_symbol[(instrument.exchange, instrument.symbol)] = instrument

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_token.values())

    def by_token(self, exchange: str, token: str) -> Instrument | None:
        return self._by_token.get((exchange, str(token)))

    def by_symbol(self, exchange: str, symbol: str) -> Instrument | None:
        return self._by_symbol.get((exchange, symbol))

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "scrip master") -> ScripMaster:
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise ScripMasterError(f"{source} is not valid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise ScripMasterError(f"{source} is a JSON {type(rows).__name__}, not an array")
        instruments = []
        for index, row in enumerate(rows):
            try:
                instruments.append(parse_row(row))
            except ValueError as exc:
                raise ScripMasterError(f"{source}: entry {index}: {exc}") from None
        return cls(instruments)

    @classmethod
    def load(
        cls,
        source: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike | None = None,
        max_age: float = CACHE_SECONDS,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> ScripMaster:
        """Read ``source`` (a file path, or an http(s) URL downloaded through the cache)."""
        text = str(source)
        if not text.startswith(("http://", "https://")):
            return cls._from_file(Path(text))
        if cache_dir is None:
            return cls.from_json(_download(text, timeout, session), source=text)

        cached = Path(cache_dir) / CACHE_NAME
        if cached.exists() and time.time() - cached.stat().st_mtime < max_age:
            log.debug("scrip master: using the cached copy %s", cached)
            return cls._from_file(cached)
        body = _download(text, timeout, session)
        master = cls.from_json(body, source=text)  # parse before replacing a good copy
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".tmp")
        partial.write_bytes(body)
        partial.replace(cached)
        log.info("scrip master: downloaded %d instruments to %s", len(master), cached)
        return master

    @classmethod
    def _from_file(cls, path: Path) -> ScripMaster:
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise ScripMasterError(f"scrip master {path} cannot be read: {exc}") from None
        return cls.from_json(body, source=str(path))


def _download(url: str, timeout: float, session: requests.Session | None) -> bytes:
    getter = session or requests
    try:
        response = getter.get(url, timeout=(5.0, timeout))
    except requests.RequestException as exc:
        raise ScripMasterError(f"scrip master download from {url} failed: {exc}") from None
    if response.status_code != 200:
        raise ScripMasterError(f"scrip master download from {url}: HTTP {response.status_code}")
    return response.content
