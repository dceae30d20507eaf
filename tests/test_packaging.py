"""A plain `pip install .` must carry everything the helpdesk reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _in_repo(pattern: str) -> set[str]:
    """Where the wheel puts the repository's files: every top-level folder goes under `helpdesk/`."""
    found = {str(p.relative_to(REPO)) for p in REPO.glob(pattern) if "__pycache__" not in p.parts}
    return {name if name.startswith("helpdesk/") else f"helpdesk/{name}" for name in found}


def test_wheel_carries_templates_migrations_rules_and_static_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("helpdesk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = (
        _in_repo("templates/mail/*.txt")
        | _in_repo("templates/web/**/*.html")
        | _in_repo("core/data/*.toml")
        | _in_repo("core/migrations/versions/*.py")
        | _in_repo("core/migrations/*.py")
        | _in_repo("core/migrations/script.py.mako")
        | _in_repo("web/static/**/*.*")
        | _in_repo("templates/translations/**/*.po")
    )
    assert any(n.startswith("helpdesk/templates/mail/") for n in needed)
    missing = sorted(needed - names)
    assert not missing, f"not in the wheel: {missing}"
    # One installed name: nothing called `core` or `web` lands in a user's site-packages.
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"helpdesk"}
    assert {"helpdesk/core/intake.py", "helpdesk/mailgateway/parse.py", "helpdesk/web/__init__.py"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "helpdesk = helpdesk.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
