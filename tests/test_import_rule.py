"""Dependencies point one way, `web -> core <- mailgateway`, and the CLI (helpdesk/) wires them together.

Read from the source (every import statement, also inside functions and under TYPE_CHECKING, and
import_module("...") with a written name), not from what happens to be loaded, so an import on a path no
test runs is caught too.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Flask and its toolkit belong to the console; IMAP, SMTP and mail-parser to the mail gateway.
WEB_LIBRARIES = ("flask", "flask_wtf", "werkzeug")
MAIL_LIBRARIES = ("imapclient", "aiosmtplib", "mailparser")
CLI = "the CLI"  # any helpdesk.* module that is not one of the mapped parts: helpdesk.cli, helpdesk.config, ...

# What each part may not import (design: web -> core <- mailgateway; the CLI is the composition root).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("helpdesk.web", "helpdesk.mailgateway", CLI, *WEB_LIBRARIES, *MAIL_LIBRARIES),
    "mailgateway": ("helpdesk.web", CLI),
    "web": ("helpdesk.mailgateway", CLI),
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported} ({self.rule})"


def package_dirs(repo: Path) -> dict[str, str]:
    """{"core": "core", "web": "web", ...}: the folders pyproject installs as helpdesk.<name>."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {name.removeprefix("helpdesk."): folder for name, folder in mapping.items() if name.startswith("helpdesk.")}


def _module_name(part: str, folder: Path, path: Path) -> str:
    rel = path.relative_to(folder).with_suffix("")
    names = [n for n in rel.parts if n != "__init__"]
    return ".".join(["helpdesk", part, *names])


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for every import in the module; `from a import b` yields a.b (b may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _breaks(imported: str, forbidden: str, parts: dict[str, str]) -> bool:
    if forbidden == CLI:
        first, _, rest = imported.partition(".")
        return first == "helpdesk" and bool(rest) and rest.split(".")[0] not in parts
    return imported == forbidden or imported.startswith(forbidden + ".")


def violations(repo: Path) -> list[Violation]:
    parts = package_dirs(repo)
    found: list[Violation] = []
    for part, forbidden in FORBIDDEN.items():
        folder = repo / parts[part]
        for path in sorted(folder.rglob("*.py")):
            module = _module_name(part, folder, path)
            tree = ast.parse(path.read_bytes(), filename=str(path))
            where = str(path.relative_to(repo))
            seen: set[tuple[int, str]] = set()  # `from helpdesk.web import api` is one finding, not two
            for line, imported in _imported(tree, module, path.name == "__init__.py"):
                for rule in forbidden:
                    if _breaks(imported, rule, parts) and (line, rule) not in seen:
                        seen.add((line, rule))
                        found.append(Violation(where, line, imported, f"{part} must not import {rule}"))
    return found


def test_web_core_mailgateway_import_only_the_way_the_design_allows() -> None:
    found = violations(REPO)
    assert not found, "imports against the design (web -> core <- mailgateway):\n" + "\n".join(map(str, found))


def _copy_layout(repo: Path, tmp: Path) -> None:
    (tmp / "pyproject.toml").write_text((repo / "pyproject.toml").read_text())
    for folder in package_dirs(repo).values():
        (tmp / folder).mkdir()
        (tmp / folder / "__init__.py").write_text("")


def test_rule_catches_each_kind_of_forbidden_import(tmp_path: Path) -> None:
    """The check itself: each line below, added to a fresh layout, is reported; allowed ones are not."""
    _copy_layout(REPO, tmp_path)
    bad = {
        "core/a.py": "from helpdesk.web import api\n",
        "core/b.py": "def f() -> None:\n    import flask\n",
        "core/c.py": "from ..mailgateway.parse import parse\n",
        "core/d.py": "from helpdesk import config\n",
        "core/e.py": "import importlib\nimportlib.import_module('imapclient')\n",
        "core/f.py": "from werkzeug.exceptions import NotFound\n",
        "mailgateway/g.py": "from helpdesk.web.security import x\n",
        "web/h.py": "from helpdesk.mailgateway import oauth\n",
        "web/i.py": "from helpdesk.cli import main\n",
    }
    good = {
        "web/ok.py": "from flask import Flask\nfrom helpdesk.core import tickets\nfrom . import api\n",
        "mailgateway/ok.py": "import imapclient\nfrom helpdesk.core.models import Ticket\n",
        "core/ok.py": "from helpdesk.core import models\nfrom . import db\nimport sqlalchemy\n",
    }
    for name, text in {**bad, **good}.items():
        (tmp_path / name).write_text(text)
    reported = {v.path for v in violations(tmp_path)}
    assert reported == set(bad)
