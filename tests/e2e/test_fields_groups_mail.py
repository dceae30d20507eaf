"""Custom fields and groups over real IMAP and SMTP: the four processes land in groups, an agent sets by mail."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from helpdesk.core import fields, groups
from helpdesk.core.models import Contact, FieldType, Group
from tests.e2e.itil_desk import add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

AGENT, ADMIN = "agent@example.org", "admin@example.org"
ALICE = "alice@example.com"


def test_the_four_processes_land_in_groups_and_an_agent_sets_a_field_and_group_by_mail(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent", ADMIN: "admin"})
        with d.session() as s:
            admin = s.scalars(select(Contact).where(Contact.email == ADMIN)).one()
            fields.define(s, admin, "site", "Site", FieldType.CHOICE, choices=["Berlin", "Hamburg"])
            groups.set_members(s, admin, groups.find(s, "network") or groups.save(s, admin, "network"), [AGENT])
        d.deliver(
            mail(ALICE, "Printer on floor 3 is jammed", "Error 42 again."),
            mail("carol@example.com", "Password reset please", "I forgot my password."),
            mail("dave@example.com", "Access to the finance share for dave@example.com", "New in finance."),
            mail("nagios@mon01.example.org", "PROBLEM Service Alert: web01/HTTP is CRITICAL",
                 "Host: web01\nState: CRITICAL\n"),
        )
        shown = [d.cli_json("ticket", str(t["id"]), "--json") for t in d.tickets()]
        assert [t["kind"] for t in shown] == ["incident", "service_request", "access_request", "incident"]
        with d.session() as s:
            existing = {g.name for g in s.scalars(select(Group))}
        assert all(t["group"] in existing for t in shown), [t["group"] for t in shown]  # routed to real groups
        assert shown[3]["group"] == "operations"  # the alert's rule routes its incident, as it does people's mail

        printer = shown[0]["number"]
        [note] = [m for m in to(d.send(), AGENT) if m["X-Helpdesk-Ticket"] == str(printer)]
        d.deliver(mail(AGENT, "", "#set site=berlin\n#group network\n\nA technician is on the way.", reply_to=note))
        [reply] = [m for m in to(d.send(), ALICE) if "technician" in text(m)]
        assert "#set" not in text(reply) and "#group" not in text(reply)
        after = d.cli_json("ticket", str(printer), "--json")
        assert (after["fields"], after["group"]) == ({"site": "Berlin"}, "network")
        assert [e.after for e in d.audit("ticket.field")] == [{"site": "Berlin"}]
        assert any("group -> network" in n for n in d.notes(printer))
