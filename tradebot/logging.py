"""Log formatting in IST and a filter that masks secrets wherever they appear."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")

# A JWT, or a value following a secret-looking key.
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_KEYED = re.compile(
    # (not the route name loginByPassword, which log lines carry as a prefix)
    r"(?i)((?<!loginBy)(?:jwt|token|password|pin|totp|secret|api[_-]?key|authorization)"
    r"[\"']?\s*[:=]\s*[\"']?(?:Bearer\s+)?)([^\s\"',}]+)"
)


def mask_text(text: str) -> str:
    text = _JWT.sub("<jwt>", text)
    return _KEYED.sub(lambda m: m.group(1) + "****", text)


class MaskSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class IstFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, IST)
        return moment.strftime(datefmt or "%H:%M:%S.") + f"{int(record.msecs):03d}"
