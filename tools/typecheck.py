"""Run mypy over the package as it is installed: `helpdesk.core`, `helpdesk.web`, ...

pyproject.toml maps the folders core/, mailgateway/, web/ and templates/ onto `helpdesk.*` (setuptools
package-dir). The editable install resolves those names through an import hook that mypy does not run, so
mypy alone cannot find `helpdesk.core`. This script lays out build/typecheck/helpdesk as the wheel does, with
symlinks to the real folders (nothing is copied, so the tree is never stale), runs mypy there with the
project's settings, and prints every finding with the repository's path (core/x.py, not helpdesk/core/x.py).

    .venv/bin/python tools/typecheck.py [mypy options]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TREE = REPO / "build" / "typecheck"


def package_dirs() -> dict[str, str]:
    """The top-level folders installed under `helpdesk.`: {"core": "core", ...} from pyproject's package-dir."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {name.removeprefix("helpdesk."): folder for name, folder in mapping.items() if name.startswith("helpdesk.")}


def build_tree(parts: dict[str, str]) -> Path:
    """build/typecheck/helpdesk: the CLI package's own entries, then one symlink per mapped part."""
    root = TREE / "helpdesk"
    shutil.rmtree(TREE, ignore_errors=True)
    root.mkdir(parents=True)
    for entry in (REPO / "helpdesk").iterdir():
        if entry.name != "__pycache__":
            (root / entry.name).symlink_to(entry)
    for name, folder in parts.items():
        (root / name).symlink_to(REPO / folder, target_is_directory=True)
    return TREE


def main(argv: list[str]) -> int:
    parts = package_dirs()
    tree = build_tree(parts)
    command = [
        sys.executable, "-m", "mypy",
        "--config-file", str(REPO / "pyproject.toml"),
        "--cache-dir", str(REPO / "build" / "mypy-cache"),
        "-p", "helpdesk", *argv,
    ]
    # From inside the tree, so that `helpdesk` is found there and not as the repository's CLI folder.
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    # helpdesk/core/x.py -> core/x.py: findings name the file one edits.
    back = re.compile(r"^helpdesk/(" + "|".join(map(re.escape, parts)) + r")/", re.MULTILINE)
    sys.stdout.write(back.sub(lambda m: parts[m.group(1)] + "/", result.stdout))
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
