"""The console reads the helpdesk's settings through one function (helpdesk.web.db.current_settings)."""

from __future__ import annotations

import re
from pathlib import Path

import helpdesk.web
from helpdesk.core.settings import Settings
from helpdesk.web import create_app
from helpdesk.web.db import current_settings

# A view reaching into the app's extensions for the settings, or a helper of its own that does.
_OWN_READ = re.compile(r"current_app\.extensions\[\"helpdesk\"\]\.settings|^def _?settings\(", re.MULTILINE)


def test_settings_are_read_in_one_place(tmp_path: Path, sqlite_session_factory) -> None:
    folder = Path(helpdesk.web.__file__).parent
    readers = sorted(p.name for p in folder.glob("*.py") if p.name != "db.py" and _OWN_READ.search(p.read_text()))
    assert readers == []
    settings = Settings(data_dir=tmp_path, database_url="unused", secret_key="test-secret")
    app = create_app(settings, sqlite_session_factory, testing=True)
    with app.app_context():
        assert current_settings() is settings
