"""Access management by real mail: approvers decide by authenticated reply, the policy holds, grants expire."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from helpdesk.core import access, users
from helpdesk.core.models import AccessGrant, AccessRequest, AccessStatus, utcnow
from helpdesk.core.models import aware
from tests.e2e.itil_desk import Desk, add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

ALICE = "alice@example.com"
BOB = "bob@example.com"
DAVE = "dave@example.com"
SECURITY = "sec@example.org"  # approver
CAROL = "carol@example.org"  # approver who also asks for access herself
# Our own domain is trusted: its mail must also show a DKIM pass from our receiving server.
DKIM_PASS = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.org; spf=pass smtp.mailfrom=example.org"}


def _requests(d: Desk) -> dict[int, tuple[str, str, str]]:
    """ticket -> (resource, beneficiary, status)"""
    with d.session() as s:
        return {r.ticket_id: (r.resource, r.beneficiary.email, r.status.value) for r in s.scalars(select(AccessRequest))}


def _grants(d: Desk) -> dict[str, AccessGrant]:
    with d.session() as s:
        found = {g.contact.email: g for g in s.scalars(select(AccessGrant))}
        s.expunge_all()
        return found


def _expire_in(d: Desk, holder: str, left: timedelta) -> None:
    """Let time pass for one grant: move its expiry to ``left`` from now."""
    with d.session() as s:
        grant = s.scalars(select(AccessGrant).join(AccessGrant.contact).where(AccessGrant.contact.has(email=holder))).one()
        s.execute(update(AccessGrant).where(AccessGrant.id == grant.id).values(expires_at=utcnow() + left))


def test_access_requests_decided_by_approvers_mail_under_the_policy_and_grants_expire(
    dovecot: DovecotServer, smtp_sink: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    with desk(tmp_path, database_url, dovecot, smtp_sink, HELPDESK_TRUSTED_DOMAINS="example.org") as d:
        add_users(d, {SECURITY: "approver", CAROL: "approver"})

        # 1. Alice asks for access on Bob's behalf; both approvers are asked.
        d.deliver(mail(f"Alice Example <{ALICE}>", f"Access to the finance share for {BOB}",
                       "Bob joined the finance team on Monday."))
        [ticket] = d.tickets()
        assert ticket["kind"] == "access_request"
        assert _requests(d)[ticket["id"]] == ("finance share", BOB, "pending")
        sent = d.send()
        [ask] = to(sent, SECURITY)
        assert "#approve" in text(ask) and BOB in text(ask)
        assert to(sent, CAROL)

        # Someone else answering the approver's mail has no token for it; the requester is no approver.
        d.deliver(mail(DAVE, "", "#approve", reply_to=ask))
        assert any("ignored: no reply token valid" in n for n in d.notes(ticket["id"]))
        [alice_ack] = to(sent, ALICE)
        d.deliver(mail(ALICE, "", "#approve", reply_to=alice_ack))
        [not_approver] = d.audit("access.refused")
        assert not_approver.actor == ALICE and "not an approver" in (not_approver.reason or "")
        assert any("refused" in n and "only approvers decide" in n for n in d.notes(ticket["id"]))

        # A reply without the DKIM/SPF pass our domain needs is not an approval.
        d.deliver(mail(SECURITY, "", "#approve", reply_to=ask))
        assert _requests(d)[ticket["id"]][2] == "pending"
        assert any("ignored" in n and "DKIM" in n for n in d.notes(ticket["id"]))
        assert [e.actor for e in d.audit("approval.ignored")] == [DAVE, SECURITY]

        d.deliver(mail(SECURITY, "", "#approve he needs it for the month-end close", reply_to=ask, headers=DKIM_PASS))
        assert _requests(d)[ticket["id"]][2] == "approved"
        grant = _grants(d)[BOB]
        assert aware(grant.expires_at) - aware(grant.granted_at) == timedelta(days=90)
        [approved] = d.audit("access.approve")
        assert approved.actor == SECURITY and approved.reason == "he needs it for the month-end close"
        sent = d.send()
        for person in (ALICE, BOB):
            [decision] = [m for m in to(sent, person) if m["Subject"].endswith("Access to finance share: approved")]
            assert grant.expires_at.strftime("%Y-%m-%d") in text(decision)
        [task] = [m for m in to(sent, ALICE) if m["Subject"].endswith(": in progress")]  # the fulfilment task
        assert f"for {BOB}" in task["Subject"]

        # 2. Carol, an approver, cannot approve her own request; Security can.
        d.deliver(mail(CAROL, "Access to the payroll system", "I need read access for the audit.", headers=DKIM_PASS))
        carols = max(_requests(d))
        sent = d.send()
        [carol_ack] = to(sent, CAROL)
        [ask_payroll] = to(sent, SECURITY)
        d.deliver(mail(CAROL, "", "#approve", reply_to=carol_ack, headers=DKIM_PASS))
        assert _requests(d)[carols][2] == "pending"
        refused = d.audit("access.refused")[-1]
        assert refused.actor == CAROL and "made this request" in (refused.reason or "")
        assert any("refused" in n and "made this request" in n for n in d.notes(carols))
        d.deliver(mail(SECURITY, "", "#approve", reply_to=ask_payroll, headers=DKIM_PASS))
        assert _requests(d)[carols][2] == "approved"

        # 3. Security rejects Dave's request with a reason; Dave is told it.
        d.deliver(mail(DAVE, "Access to the CEO mailbox", "Please, just for this week."))
        daves = max(_requests(d))
        [ask_ceo] = to(d.send(), SECURITY)
        d.deliver(mail(SECURITY, "", "#reject mailbox access needs the CEO's consent", reply_to=ask_ceo,
                       headers=DKIM_PASS))
        assert _requests(d)[daves][2] == "rejected"
        [rejected] = [m for m in to(d.send(), DAVE) if m["Subject"].endswith(": rejected")]
        assert "needs the CEO's consent" in text(rejected)
        assert DAVE not in _grants(d)

        # 4. Bob's grant comes close to its expiry, Carol's passes it: one warning, one end.
        d.send()
        _expire_in(d, BOB, timedelta(days=3))
        _expire_in(d, CAROL, -timedelta(hours=1))
        d.cli("sla", "--check")
        sent = d.send()
        [warning] = to(sent, BOB)
        assert "expires on" in warning["Subject"] and "finance share" in warning["Subject"]
        assert [m["Subject"] for m in to(sent, SECURITY)] == [warning["Subject"]]  # the approvers hear it too
        [carol_warned, ended] = sorted(to(sent, CAROL), key=lambda m: "revoked" in m["Subject"])
        assert carol_warned["Subject"] == warning["Subject"]
        assert "revoked" in ended["Subject"] and "payroll" in ended["Subject"]
        assert _grants(d)[CAROL].revoked_at is not None
        assert "expired" in (_grants(d)[CAROL].revoke_reason or "")
        with d.session() as s:  # what `sla --check` runs, again: nothing new
            assert access.warn_expiring(s, d.app.settings) == access.ExpiryRun([], [])
        assert d.send() == []  # warned once

        # 5. Security revokes Bob's access; Bob is told.
        with d.session() as s:
            bobs = s.get(AccessGrant, _grants(d)[BOB].id)
            assert bobs is not None
            access.revoke(s, d.app.settings, bobs, users.find_user(s, SECURITY), "left the finance team")  # type: ignore[arg-type]
        [revoked] = to(d.send(), BOB)
        assert "revoked" in revoked["Subject"] and "left the finance team" in text(revoked)
        assert [e.object_id for e in d.audit("access.revoke")][-1] == _grants(d)[BOB].id
        assert [r[2] for r in _requests(d).values()].count(AccessStatus.APPROVED.value) == 2
        assert "intact" in d.cli("audit", "verify")
