"""Benchmark: deeply nested HTML mail, ingested and its ticket page viewed, against an ordinary HTML mail.

    python bench/nested_html.py [DEPTH ...]

For each depth (default 10,000, 50,000 and 200,000 nested <div>) a mail is ingested on a fresh SQLite
database and its ticket page fetched three times from the console (test client, logged in as an agent).
The baseline is an ordinary HTML mail (a 200-row table), measured the same way in the same run. Prints
ingest and page-view times as ratios to the baseline: sanitising once at intake, within a budget, keeps
the page views flat whatever the depth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cc import fresh_desk  # noqa: E402
from helpdesk.core.db import transaction  # noqa: E402
from helpdesk.core.models import Role  # noqa: E402
from helpdesk.core.settings import Settings  # noqa: E402
from helpdesk.core.users import create_user  # noqa: E402
from tests.web.conftest import PASSWORD, STAFF, login  # noqa: E402
from helpdesk.web import create_app  # noqa: E402

VIEWS = 3


def html_mail(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.com", "help@example.org", "Printer report"
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


def measure(html: str, workdir: Path) -> tuple[float, float]:
    """(seconds to ingest, seconds per page view) for a mail with this HTML."""
    with fresh_desk(workdir, None) as desk:
        with transaction(desk.factory) as session:
            create_user(session, STAFF[Role.AGENT], Role.AGENT, PASSWORD)
        started = time.perf_counter()
        result = desk.deliver(html_mail(html))
        ingest = time.perf_counter() - started
        settings = Settings(data_dir=workdir, database_url="unused", secret_key="bench")
        client = login(create_app(settings, desk.factory, testing=True).test_client(), Role.AGENT)
        started = time.perf_counter()
        for _ in range(VIEWS):
            page = client.get(f"/tickets/{result.ticket_id}")
            assert page.status_code == 200, page.status_code
        return ingest, (time.perf_counter() - started) / VIEWS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("depths", type=int, nargs="*", default=[10_000, 50_000, 200_000], metavar="DEPTH")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="helpdesk-bench-") as tmp:
        table = "<table>" + "<tr><td>printer</td><td>jammed</td></tr>" * 200 + "</table>"
        measure(table, Path(tmp) / "warm-up")  # imports, rules, templates
        base_ingest, base_view = measure(table, Path(tmp) / "base")
        print(f"baseline (200-row table): ingest {base_ingest * 1000:.0f} ms, page view {base_view * 1000:.0f} ms")
        for depth in args.depths:
            nested = "<div>" * depth + "The printer is jammed." + "</div>" * depth
            ingest, view = measure(nested, Path(tmp) / str(depth))
            print(f"{depth:>7} nested <div> ({len(nested) / 1e6:.1f} MB): ingest {ingest:6.2f} s = "
                  f"{ingest / base_ingest:6.1f} x baseline, page view {view * 1000:6.0f} ms = {view / base_view:5.1f} x baseline")


if __name__ == "__main__":
    main()
