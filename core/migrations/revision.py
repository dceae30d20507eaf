"""Write the next migration for what changed in the models.

    python -m helpdesk.core.migrations.revision "what changed"

The migrations are frozen once written (0001 is the schema of the first release): a database made
by any earlier version is brought up to date by `helpdesk init` (and every command) running them
in order. This builds a throwaway database at the newest migration and lets Alembic write the
difference to the models as the next revision; read it over before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from helpdesk.core.db import alembic_config, make_engine, upgrade

VERSIONS = Path(__file__).parent / "versions"


def next_rev_id() -> str:
    numbers = [int(p.name[:4]) for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print('usage: python -m helpdesk.core.migrations.revision "what changed"', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/head.db")
        upgrade(engine)
        command.revision(alembic_config(engine), message=argv[0], autogenerate=True, rev_id=next_rev_id())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
