"""Every message of the real-world corpus through intake (store, parse, loop guard, thread, classify):
zero crashes, zero losses; each one a ticket or message, a recognised duplicate or automatic mail, or
quarantined with a reason. Run with ``-s`` for the figures."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from helpdesk.core.db import transaction
from helpdesk.core.intake import process_pending
from helpdesk.core.models import Inbound, InboundStatus
from helpdesk.core.settings import Settings
from helpdesk.wiring import build

SWEEP_SECONDS = 90
# The corpus's notes and expected results are not mail.
_NOT_MAIL_NAMES = {"LICENSE.upstream", "README.md", "expected-threads-default.txt"}
_NOT_MAIL_SUFFIXES = (".json", ".xml")


def _is_mail(path: Path) -> bool:
    name = path.name
    return not (
        name in _NOT_MAIL_NAMES
        or name.endswith(_NOT_MAIL_SUFFIXES)
        or "_decoded_" in name  # mime4j's decoded part bodies
        or name.endswith("_reply_text")  # talon's expected reply texts
    )


def test_every_corpus_message_goes_through_intake_without_a_crash_or_a_loss(corpus_dir: Path, tmp_path: Path) -> None:
    files = sorted(p for p in corpus_dir.rglob("*") if p.is_file() and _is_mail(p))
    assert files, "the corpus is empty"
    app = build(Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}"))
    started = time.monotonic()
    digests: dict[int, tuple[str, str]] = {}
    try:
        for start in range(0, len(files), 200):
            with transaction(app.factory) as session:
                for path in files[start : start + 200]:
                    raw = path.read_bytes()
                    inbound = app.intake.store(session, raw, source="corpus")
                    assert inbound is not None
                    digests[inbound.id] = (str(path.relative_to(corpus_dir)), hashlib.sha256(raw).hexdigest())
        results = process_pending(app.factory, app.intake)  # raises on a crash: that is the failure
        took = time.monotonic() - started
        with app.factory() as session:
            rows = session.scalars(select(Inbound).order_by(Inbound.id)).all()
    finally:
        app.engine.dispose()

    assert len(results) == len(files) == len(rows)
    statuses = Counter(r.status for r in rows)
    # Nothing lost: every file is one stored inbound mail with its exact bytes, and none is left undone.
    assert {r.id: r.sha256 for r in rows} == {i: d for i, (_, d) in digests.items()}
    assert statuses[InboundStatus.NEW] == 0
    for r in rows:
        where = digests[r.id][0]
        if r.status is InboundStatus.PROCESSED:
            assert r.ticket_id is not None, where
        elif r.status is InboundStatus.DUPLICATE:
            assert r.duplicate_of_id is not None, where
        else:
            assert r.reason, f"{where}: {r.status.value} without a reason"
    quarantined = [f"{digests[r.id][0]}: {r.reason}" for r in rows if r.status is InboundStatus.QUARANTINED]
    processing_failures = [q for q in quarantined if "processing failed" in q]

    print(
        f"\ncorpus through intake: {len(files)} messages in {took:.1f} s ({len(files) / took:.0f}/s): "
        + ", ".join(f"{s.value} {n}" for s, n in sorted(statuses.items(), key=lambda x: x[0].value))
    )
    for line in quarantined[:20]:
        print("  quarantined:", line[:200])
    # Unreadable mail may be quarantined; a failure of our own processing code is a bug.
    assert processing_failures == [], processing_failures[:10]
    assert took < SWEEP_SECONDS
