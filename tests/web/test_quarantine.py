"""Quarantine in the console: an admin discards a mail with a reason; the raw bytes stay."""

from __future__ import annotations

import hashlib

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Inbound, InboundStatus, RawMail, Role
from tests.web.conftest import STAFF, csrf_token, login


def _inbound(factory: sessionmaker[Session], raw: bytes, status: InboundStatus) -> int:
    with transaction(factory) as session:
        digest = hashlib.sha256(raw).hexdigest()
        session.add(RawMail(sha256=digest, size=len(raw), data=raw))
        row = Inbound(source="INBOX", sha256=digest, status=status, reason="unreadable: test")
        session.add(row)
        session.flush()
        return row.id


def _status(factory: sessionmaker[Session], inbound_id: int) -> tuple[InboundStatus, bytes]:
    with factory() as session:
        row = session.get(Inbound, inbound_id)
        assert row is not None
        return row.status, row.raw.data


def test_admin_discards_a_quarantined_mail_with_a_reason(as_admin: FlaskClient, factory) -> None:
    raw = b"Subject: junk\r\n\r\n\xff\xfe broken\r\n"
    inbound_id = _inbound(factory, raw, InboundStatus.QUARANTINED)
    listing = as_admin.get("/admin/quarantine").get_data(as_text=True)
    assert f'action="/admin/quarantine/{inbound_id}/discard"' in listing
    token = csrf_token(as_admin, "/admin/quarantine")

    blank = as_admin.post(f"/admin/quarantine/{inbound_id}/discard", data={"csrf_token": token, "reason": "  "},
                          follow_redirects=True)
    assert "needs a reason" in blank.get_data(as_text=True)
    assert _status(factory, inbound_id)[0] is InboundStatus.QUARANTINED

    done = as_admin.post(f"/admin/quarantine/{inbound_id}/discard",
                         data={"csrf_token": token, "reason": "spam from a scanner"}, follow_redirects=True)
    assert f"Mail {inbound_id} discarded" in done.get_data(as_text=True)
    assert "Nothing in quarantine." in done.get_data(as_text=True)
    assert _status(factory, inbound_id) == (InboundStatus.DISCARDED, raw)  # the bytes stay
    with factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "inbound.discard")).all()
        assert (entry.actor, entry.object_id, entry.reason) == (STAFF[Role.ADMIN], inbound_id, "spam from a scanner")
    detail = as_admin.get(f"/admin/quarantine/{inbound_id}").get_data(as_text=True)
    assert "discarded by admin@example.org: spam from a scanner" in detail and "Discard</button>" not in detail


def test_discarding_mail_that_is_not_quarantined_is_refused(as_admin: FlaskClient, factory) -> None:
    inbound_id = _inbound(factory, b"Subject: fine\r\n\r\nok\r\n", InboundStatus.PROCESSED)
    token = csrf_token(as_admin, "/admin/quarantine")
    page = as_admin.post(f"/admin/quarantine/{inbound_id}/discard", data={"csrf_token": token, "reason": "spam"},
                         follow_redirects=True).get_data(as_text=True)
    assert f"inbound mail {inbound_id} is processed, not quarantined" in page
    assert _status(factory, inbound_id)[0] is InboundStatus.PROCESSED
    missing = as_admin.post("/admin/quarantine/999/discard", data={"csrf_token": token, "reason": "spam"},
                            follow_redirects=True).get_data(as_text=True)
    assert "no inbound mail 999" in missing


def test_discard_needs_the_admin_role_and_a_csrf_token(app: Flask, as_admin: FlaskClient, factory) -> None:
    inbound_id = _inbound(factory, b"Subject: junk\r\n\r\n", InboundStatus.QUARANTINED)
    agent = login(app.test_client(), Role.AGENT)
    token = csrf_token(agent, "/tickets")
    assert agent.post(f"/admin/quarantine/{inbound_id}/discard",
                      data={"csrf_token": token, "reason": "spam"}).status_code == 403
    assert as_admin.post(f"/admin/quarantine/{inbound_id}/discard", data={"reason": "spam"}).status_code == 400
    assert _status(factory, inbound_id)[0] is InboundStatus.QUARANTINED


def test_admin_requeues_a_quarantined_mail_and_the_audit_trail_says_who(as_admin: FlaskClient, factory) -> None:
    inbound_id = _inbound(factory, b"Subject: fixed now\r\n\r\nok\r\n", InboundStatus.QUARANTINED)
    processed = _inbound(factory, b"Subject: fine\r\n\r\nok\r\n", InboundStatus.PROCESSED)
    token = csrf_token(as_admin, "/admin/quarantine")
    done = as_admin.post(f"/admin/quarantine/{inbound_id}/requeue", data={"csrf_token": token}, follow_redirects=True)
    assert f"Mail {inbound_id} requeued" in done.get_data(as_text=True)
    refused = as_admin.post(f"/admin/quarantine/{processed}/requeue", data={"csrf_token": token}, follow_redirects=True)
    assert "not quarantined" in refused.get_data(as_text=True)
    assert _status(factory, inbound_id)[0] is InboundStatus.NEW
    with factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "inbound.requeue")).all()
        assert (entry.actor, entry.object_type, entry.object_id) == (STAFF[Role.ADMIN], "inbound", inbound_id)
        assert entry.before == {"status": "quarantined", "reason": "unreadable: test"}
        assert entry.after == {"status": "new"}
