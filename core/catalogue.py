"""The service catalogue: standard requests users can make, kept as data (TOML)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpdesk.core.configfile import ConfigError, read_toml, shipped

if TYPE_CHECKING:
    from helpdesk.core.settings import Settings

CATALOGUE_FILE = "catalogue.toml"
_KEYS = frozenset({"code", "name", "keywords", "fulfilment_hours", "approval", "approver", "group", "steps"})


class CatalogueError(ConfigError):
    """A catalogue file that cannot be used."""


@dataclass(frozen=True)
class CatalogueItem:
    code: str
    name: str
    keywords: tuple[str, ...]
    fulfilment: timedelta  # target from logging to fulfilment
    approval: bool
    approver: str | None  # "approver" (the role) or a resource group; None when no approval
    group: str | None
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    items: tuple[CatalogueItem, ...]

    def get(self, code: str | None) -> CatalogueItem | None:
        return next((i for i in self.items if i.code == code), None)

    def match(self, text: str) -> CatalogueItem | None:
        """The first item with a keyword in the text (whole words, any case)."""
        for item in self.items:
            for keyword in item.keywords:
                if re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE):
                    return item
        return None


def _item(raw: dict[str, object], where: str) -> CatalogueItem:
    unknown = set(raw) - _KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        code, name, hours = str(raw["code"]), str(raw["name"]), raw["fulfilment_hours"]
    except KeyError as exc:
        raise CatalogueError(f"{where}: missing {exc.args[0]!r}") from exc
    if not isinstance(hours, (int, float)) or hours <= 0:
        raise CatalogueError(f"{where}: fulfilment_hours must be a positive number")
    approval = bool(raw.get("approval", False))
    approver = raw.get("approver")
    if approval and not approver:
        raise CatalogueError(f"{where}: item {code!r} needs approval but names no approver")
    keywords, steps = raw.get("keywords", []), raw.get("steps", [])
    if not isinstance(keywords, list) or not isinstance(steps, list):
        raise CatalogueError(f"{where}: keywords and steps must be lists")
    return CatalogueItem(
        code=code,
        name=name,
        keywords=tuple(str(k) for k in keywords),
        fulfilment=timedelta(hours=float(hours)),
        approval=approval,
        approver=str(approver) if approval else None,
        group=str(raw["group"]) if raw.get("group") else None,
        steps=tuple(str(s) for s in steps),
    )


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load a catalogue file; None = the shipped core/data/catalogue.toml."""
    where = str(path) if path else "shipped catalogue"
    return catalogue_from(read_toml(path or shipped(CATALOGUE_FILE), where, CatalogueError), where)


def catalogue_from(data: dict[str, Any], where: str) -> Catalogue:
    """Validate the tables of a catalogue file into typed items; errors name `where` and the item."""
    raw_items = data.get("item")
    if not isinstance(raw_items, list) or not raw_items:
        raise CatalogueError(f"{where}: no [[item]] tables")
    items = tuple(_item(raw, f"{where} item {n + 1}") for n, raw in enumerate(raw_items))
    codes = [i.code for i in items]
    if len(set(codes)) != len(codes):
        raise CatalogueError(f"{where}: duplicate codes {sorted({c for c in codes if codes.count(c) > 1})}")
    return Catalogue(items)


def catalogue_for(settings: Settings) -> Catalogue:
    """The configured catalogue, loaded once at start (see core.rulebook)."""
    return settings.rulebook.catalogue
