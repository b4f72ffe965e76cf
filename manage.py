#!/usr/bin/env python
"""Django's command-line utility for tradebot."""

import os
import sys
from pathlib import Path


def load_dotenv_file() -> None:
    """Settings from `.env` beside this file; the real environment wins. The tests turn
    this off (TRADEBOT_DOTENV=0) so a developer's live `.env` never reaches them."""
    if os.environ.get("TRADEBOT_DOTENV", "1") == "0":
        return
    from dotenv import load_dotenv

    load_dotenv(Path(__file__).resolve().parent / ".env", override=False)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradebot.settings")
    load_dotenv_file()
    from django.core.management import execute_from_command_line

    from tradebot.env import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.exit(f"tradebot: {exc}")


if __name__ == "__main__":
    main()
