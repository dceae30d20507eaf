"""The service catalogue: standard requests users can make, kept as data (TOML)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path

from helpdesk.core.settings import Settings

CATALOGUE_FILE = "catalogue.toml"
_KEYS = frozenset({"code", "name", "keywords", "fulfilment_hours", "approval", "approver", "group", "steps"})


class CatalogueError(Exception):
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
    if path is None:
        text, where = resources.files("helpdesk.core").joinpath("data", CATALOGUE_FILE).read_text("utf-8"), "shipped catalogue"
    else:
        where = str(path)
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # TOML is UTF-8: a Latin-1 file is unreadable too
            raise CatalogueError(f"{where}: cannot read catalogue file: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{where}: {exc}") from exc
    raw_items = data.get("item")
    if not isinstance(raw_items, list) or not raw_items:
        raise CatalogueError(f"{where}: no [[item]] tables")
    items = tuple(_item(raw, f"{where} item {n + 1}") for n, raw in enumerate(raw_items))
    codes = [i.code for i in items]
    if len(set(codes)) != len(codes):
        raise CatalogueError(f"{where}: duplicate codes {sorted({c for c in codes if codes.count(c) > 1})}")
    return Catalogue(items)


def catalogue_for(settings: Settings) -> Catalogue:
    """The configured catalogue: settings.catalogue_path, else <data dir>/catalogue.toml, else shipped."""
    path = settings.catalogue_path or settings.data_dir / CATALOGUE_FILE
    return load_catalogue(path if path.is_file() else None)
