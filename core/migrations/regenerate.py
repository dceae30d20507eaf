"""Regenerate the initial migration from the models (only while nothing has been released).

    python -m core.migrations.regenerate
"""

import tempfile
from pathlib import Path

from alembic import command

from core.db import alembic_config, make_engine

VERSIONS = Path(__file__).parent / "versions"


def main() -> None:
    for old in VERSIONS.glob("0001_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/empty.db")
        command.revision(
            alembic_config(engine), message="initial schema", autogenerate=True, rev_id="0001"
        )
    for new in VERSIONS.glob("0001_*.py"):
        print(f"wrote {new}")


if __name__ == "__main__":
    main()
