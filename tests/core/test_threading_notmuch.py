"""notmuch's `corpora/default` ingested in date order gives one ticket per thread of its expected listing."""

from __future__ import annotations

import re
from collections import Counter
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy import select

from helpdesk.core.models import Inbound, InboundStatus, Outbox, Ticket
from tests.core.desk import make_desk

_LINE = re.compile(r"^thread:XXX\s+\S+\s+\[(\d+)/(\d+)(?:\((\d+)\))?\]\s+([^;]*);\s+(.*)\s+\([^()]*\)$")


def _plain(subject: str) -> str:
    return re.sub(r"^(re:\s*)+", "", " ".join(subject.split()), flags=re.IGNORECASE)


def _date(raw: bytes) -> float:
    head = raw.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"^Date:\s*(.+(?:\n[ \t].+)*)", head, re.MULTILINE | re.IGNORECASE)
    try:
        return parsedate_to_datetime(m.group(1).replace("\n", " ")).timestamp() if m else 0.0
    except (TypeError, ValueError):
        return 0.0


def test_default_corpus_threads_into_one_ticket_per_thread(corpus_dir: Path, sqlite_session_factory, tmp_path) -> None:
    root = corpus_dir / "notmuch"
    expected_lines = [_LINE.match(line) for line in (root / "expected-threads-default.txt").read_text().splitlines()
                      if line.startswith("thread:")]
    assert all(expected_lines)
    expected = Counter(int(m.group(2)) for m in expected_lines if m)

    files = sorted((p for p in (root / "corpora" / "default").rglob("*") if p.is_file()),
                   key=lambda p: (_date(p.read_bytes()), str(p)))
    desk = make_desk(sqlite_session_factory, tmp_path)
    results = [desk.deliver(p.read_bytes()) for p in files]
    statuses = Counter(r.status for r in results)
    per_ticket = Counter(r.ticket_id for r in results if r.status is InboundStatus.PROCESSED)
    got = Counter(per_ticket.values())
    with desk.factory() as session:
        quarantined = session.scalars(select(Inbound.reason).where(Inbound.status == InboundStatus.QUARANTINED)).all()
        acked = session.scalars(
            select(Ticket.subject).join(Outbox, Outbox.ticket_id == Ticket.id).where(Outbox.purpose == "acknowledgement")
        ).all()
    print(f"\nnotmuch default: {len(files)} files, {statuses[InboundStatus.PROCESSED]} processed, "
          f"{statuses[InboundStatus.DUPLICATE]} duplicates, {len(quarantined)} quarantined; "
          f"{len(per_ticket)} tickets for {sum(expected.values())} expected threads; "
          f"thread sizes got {sorted(got.items())} expected {sorted(expected.items())}; {len(acked)} acknowledged ({acked})")
    assert quarantined == []
    assert len(per_ticket) == sum(expected.values())
    assert got == expected
    # And the same threads: each ticket's subject and size is one line of the listing.
    with desk.factory() as session:
        subjects = {t.id: _plain(t.subject) for t in session.scalars(select(Ticket))}
    assert Counter((subjects[t], n) for t, n in per_ticket.items()) == Counter(
        (_plain(m.group(5)), int(m.group(2))) for m in expected_lines if m
    )
    # List mail threads, but is never auto-answered; only the one private mail in the corpus is.
    assert acked == ["Essai accentué"]
