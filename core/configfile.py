"""The one reader of TOML files: the settings file, the rules, the catalogue and the priority matrix.

A file that cannot be used is one line naming it (and, for a syntax error, the line and column in it),
raised as ConfigError or the subclass the caller names.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A setting or a settings file is missing or wrong; the message names it."""


def shipped(name: str) -> Traversable:
    """A file shipped in core/data (the defaults a data dir file or a setting replaces)."""
    return resources.files("helpdesk.core").joinpath("data", name)


# tomllib ends its messages with "(at line 3, column 9)" or "(at end of document)".
_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def read_toml(
    source: Path | Traversable, label: str, error: type[ConfigError] = ConfigError
) -> dict[str, Any]:
    """The tables of a TOML file; `label` starts every error ("HELPDESK_CONFIG: /etc/helpdesk.toml")."""
    try:
        data = source.read_bytes()
    except OSError as exc:  # missing, a directory, no permission, ...
        raise error(f"{label}: cannot read: {exc.strerror or exc}") from None
    return parse_toml(data, label, error)


def parse_toml(data: bytes | str, label: str, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise error(f"{label}: not UTF-8 text (TOML files must be)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{label}: not valid TOML, {_where(str(exc))}") from None


def _where(message: str) -> str:
    """"Invalid value (at line 3, column 9)" -> "line 3, column 9: invalid value"."""
    found = _POSITION.search(message)
    if found is None:
        return message
    reason = message[: found.start()]
    reason = reason[:1].lower() + reason[1:]
    if found.group(1) is None:
        return f"at the end: {reason}"
    return f"line {found.group(1)}, column {found.group(2)}: {reason}"
