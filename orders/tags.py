"""Order tags: a short, deterministic label per intent, sent with every attempt.

Layout: prefix + 4 check characters + the intent's primary key in base 36, upper case,
e.g. ``TB7QK21C`` for intent 1900. The check characters are a hash of the primary key
and the intent's creation time, so an order left in the broker's book by an earlier
database (same primary key, another intent) never matches a new intent. Angel wants
fewer than 20 characters; these stay under 16 up to a few trillion intents.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from django.conf import settings

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CHECK_LENGTH = 4
MAX_LENGTH = 19  # the simulator and Angel refuse 20 and more


def prefix() -> str:
    value = str(getattr(settings, "ORDER_TAG_PREFIX", "TB")).upper()
    if not re.fullmatch(r"[A-Z]{1,4}", value):
        raise ValueError(f"ORDER_TAG_PREFIX must be 1-4 letters, got {value!r}")
    return value


def base36(number: int) -> str:
    if number < 0:
        raise ValueError("base36 needs a non-negative number")
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = DIGITS[digit] + out
        if number == 0:
            return out


def _check(pk: int, created_at: datetime) -> str:
    digest = hashlib.blake2b(f"{pk}:{created_at.timestamp():.6f}".encode(), digest_size=8)
    return base36(int.from_bytes(digest.digest(), "big")).rjust(CHECK_LENGTH, "0")[-CHECK_LENGTH:]


def make_tag(pk: int, created_at: datetime) -> str:
    tag = prefix() + _check(pk, created_at) + base36(pk)
    if len(tag) > MAX_LENGTH:
        raise ValueError(f"order tag {tag!r} is longer than {MAX_LENGTH} characters")
    return tag


def is_ours(tag: str | None) -> bool:
    """Whether a tag in the broker's book has our prefix and shape."""
    return parse_pk(tag) is not None


def parse_pk(tag: str | None) -> int | None:
    """The intent primary key a tag of ours names, or ``None`` for anyone else's tag."""
    if not tag:
        return None
    head = prefix()
    tag = tag.strip().upper()
    body = tag[len(head) + CHECK_LENGTH :]
    if not tag.startswith(head) or not body or not re.fullmatch(r"[0-9A-Z]+", tag):
        return None
    return int(body, 36)
