"""Typed readers for settings that come from the environment.

Each reader fails loudly, naming the variable, when a value cannot be used. A secret
may also come from a file: ``NAME_FILE=/run/secrets/name`` (Docker secrets).
"""

from __future__ import annotations

import os


class ConfigError(RuntimeError):
    """A setting is missing or malformed. The process stops and names the variable."""


def _raw(name: str) -> str | None:
    file_path = os.environ.get(name + "_FILE")
    if file_path:
        try:
            with open(file_path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_path} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None) -> str:
    value = _raw(name)
    if value is None:
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    return value


def env_optional(name: str) -> str | None:
    return _raw(name)


def _bounded(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value!r} is too small; at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value!r} is too large; at most {maximum}")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    _bounded(name, number, minimum, maximum)
    return number


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={value!r} is not a finite number")
    _bounded(name, number, minimum, maximum)
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a yes/no value (use 1/0, true/false)")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_list(name: str, default: tuple[str, ...] = ()) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def mask(secret: str | None) -> str:
    """Show a secret as its length and last two characters, never more."""
    if not secret:
        return "(unset)"
    if len(secret) <= 4:
        return "****"
    return f"****{secret[-2:]} ({len(secret)} chars)"
