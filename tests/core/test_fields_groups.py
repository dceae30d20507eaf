"""Custom fields and groups in core: validated values per ticket kind, audited; groups, membership and routing."""

from __future__ import annotations

from dataclasses import replace
from email.message import EmailMessage

import pytest
from sqlalchemy import delete, select

from helpdesk.core import fields, groups, tickets
from helpdesk.core.catalogue import load_catalogue
from helpdesk.core.classify import load_rules, parse_rules
from helpdesk.core.db import transaction
from helpdesk.core.intake import Intake
from helpdesk.core.models import AuditEntry, Contact, FieldType, FieldValue, Group, Role, Ticket
from helpdesk.mailgateway.parse import parse_message
from tests.core.desk import Desk, mail, make_desk

AGENT = "agent@example.org"
ADMIN = "admin@example.org"
NET = "net@example.org"


@pytest.fixture
def desk(session_factory, tmp_path) -> Desk:  # type: ignore[no-untyped-def]
    desk = make_desk(session_factory, tmp_path)
    desk.add_user(AGENT)
    desk.add_user(NET)
    desk.add_user(ADMIN, Role.ADMIN)
    with transaction(desk.factory) as session:
        groups.adopt(session, load_rules(None))  # as a start does: the shipped rules' groups
    return desk


def _contact(session, email: str) -> Contact:  # type: ignore[no-untyped-def]
    return session.scalars(select(Contact).where(Contact.email == email)).one()


def _define(desk: Desk, key: str, type_: FieldType, **more) -> None:  # type: ignore[no-untyped-def]
    with transaction(desk.factory) as session:
        fields.define(session, _contact(session, ADMIN), key, key.title(), type_, **more)


def _set(desk: Desk, number: int, key: str, value: str) -> None:
    with transaction(desk.factory) as session:
        fields.set_value(session, tickets.get(session, number), AGENT, key, value)  # type: ignore[arg-type]


def _audit(desk: Desk, action: str) -> list[AuditEntry]:
    with desk.factory() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))
        session.expunge_all()
        return rows


def test_field_values_are_checked_by_type_and_every_set_is_audited(desk: Desk) -> None:
    number = desk.deliver(mail(subject="Printer jammed")).ticket_id
    assert number is not None
    _define(desk, "site", FieldType.CHOICE, choices=["Berlin", "Hamburg"])
    _define(desk, "visit", FieldType.DATE)
    _define(desk, "owner", FieldType.USER)
    _define(desk, "asset", FieldType.TEXT)
    for key, bad, why in [
        ("site", "Paris", "not one of Berlin, Hamburg"),
        ("visit", "5.12.2026", "not a date"),
        ("visit", "2026-02-30", "not a date"),
        ("owner", "alice@example.com", "not an agent"),
        ("nope", "x", "no field 'nope'"),
    ]:
        with pytest.raises(fields.FieldError, match=why):
            _set(desk, number, key, bad)
    _set(desk, number, "site", "berlin")  # a choice in any case is stored as the admin wrote it
    _set(desk, number, "visit", "2026-12-24")
    _set(desk, number, "owner", NET.upper())
    _set(desk, number, "asset", "  PC   4711 ")
    assert desk.ticket(number)["fields"] == {
        "site": "Berlin", "visit": "2026-12-24", "owner": NET, "asset": "PC 4711",
    }
    _set(desk, number, "site", "Hamburg")
    _set(desk, number, "asset", "")  # blank clears
    assert desk.ticket(number)["fields"] == {"site": "Hamburg", "visit": "2026-12-24", "owner": NET}
    changes = [(e.actor, e.object_id, e.before, e.after) for e in _audit(desk, "ticket.field")]
    assert changes[0] == (AGENT, number, {"site": None}, {"site": "Berlin"})
    assert changes[-2:] == [
        (AGENT, number, {"site": "Berlin"}, {"site": "Hamburg"}),
        (AGENT, number, {"asset": "PC 4711"}, {"asset": None}),
    ]
    assert [e.after["key"] for e in _audit(desk, "field.create")] == ["site", "visit", "owner", "asset"]


def test_a_field_applies_to_its_kind_and_a_required_one_cannot_be_cleared(desk: Desk) -> None:
    incident = desk.deliver(mail(subject="Printer jammed")).ticket_id
    assert incident is not None
    _define(desk, "resource_owner", FieldType.USER, applies_to="access")
    _define(desk, "site", FieldType.TEXT, required=True)
    with pytest.raises(fields.FieldError, match="is for access tickets"):
        _set(desk, incident, "resource_owner", AGENT)
    _set(desk, incident, "site", "Berlin")
    with pytest.raises(fields.FieldError, match="required"):
        _set(desk, incident, "site", " ")
    with desk.factory() as session:
        ticket = tickets.get(session, incident)
        assert ticket is not None
        assert [(s.field.key, s.value) for s in fields.shown(session, ticket)] == [("site", "Berlin")]


def test_a_field_definition_is_checked_and_deleting_it_drops_its_values(desk: Desk) -> None:
    number = desk.deliver(mail()).ticket_id
    assert number is not None
    for key, type_, more, why in [
        ("Bad Key", FieldType.TEXT, {}, "key is 1-40"),
        ("site", FieldType.CHOICE, {}, "needs at least one choice"),
        ("site", FieldType.TEXT, {"choices": ["a"]}, "only a choice field"),
        ("site", FieldType.TEXT, {"applies_to": "problem"}, "applies to one of"),
    ]:
        with pytest.raises(fields.FieldError, match=why):
            _define(desk, key, type_, **more)
    _define(desk, "site", FieldType.TEXT)
    with pytest.raises(fields.FieldError, match="already a field site"):
        _define(desk, "site", FieldType.DATE)
    _set(desk, number, "site", "Berlin")
    with transaction(desk.factory) as session:
        site = fields.find(session, "site")
        assert site is not None
        with pytest.raises(fields.FieldError, match="its type stays text"):
            fields.define(session, _contact(session, ADMIN), "site", "Site", FieldType.DATE, field=site)
    with transaction(desk.factory) as session:
        site = fields.find(session, "site")
        assert site is not None
        assert fields.delete(session, _contact(session, ADMIN), site) == 1
    with desk.factory() as session:
        assert session.scalars(select(FieldValue)).all() == []
    assert _audit(desk, "field.delete")[0].after == {"values_deleted": 1}


def test_group_assignment_membership_rename_and_delete_are_audited(desk: Desk) -> None:
    number = desk.deliver(mail(subject="Printer jammed")).ticket_id
    assert number is not None
    with transaction(desk.factory) as session:
        admin = _contact(session, ADMIN)
        group = groups.save(session, admin, "Field Service", email="field@example.org")
        groups.set_members(session, admin, group, [NET, AGENT])
        with pytest.raises(groups.GroupError, match="not an agent: alice@example.com"):
            groups.set_members(session, admin, group, ["alice@example.com"])
        with pytest.raises(groups.GroupError, match="already a group Field Service"):
            groups.save(session, admin, "field service")
    with transaction(desk.factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        with pytest.raises(groups.GroupError, match="no group 'Nowhere'"):
            groups.assign(session, ticket, AGENT, "Nowhere")
        assert groups.assign(session, ticket, AGENT, "Field Service")
        assert groups.of_agent(session, _contact(session, NET)) == ["Field Service"]
    moves = [(e.before, e.after) for e in _audit(desk, "ticket.change") if e.object_id == number]
    assert moves[-1] == ({"group": "desktop"}, {"group": "Field Service"})
    assert _audit(desk, "group.members")[0].after == {"members": [AGENT, NET]}
    with transaction(desk.factory) as session:
        group = groups.find(session, "Field Service")
        assert group is not None
        groups.save(session, _contact(session, ADMIN), "Field Team", group=group)
    assert desk.ticket(number)["group"] == "Field Team"  # a rename moves the tickets along
    with transaction(desk.factory) as session:
        group = groups.find(session, "Field Team")
        assert group is not None
        groups.delete(session, _contact(session, ADMIN), group)
    assert desk.ticket(number)["group"] is None
    assert _audit(desk, "group.delete")[0].after == {"tickets_without_group": 1}


SITE_RULES = (
    '[defaults]\nkind = "incident"\ncategory = "general"\ngroup = "service-desk"\n'
    '[[rule]]\nname = "coffee"\n[rule.when]\nsubject = "coffee"\n[rule.then]\ncategory = "facilities"\ngroup = "Facilities"\n'
)


def test_a_mail_matching_a_rule_lands_in_the_rules_group(desk: Desk) -> None:
    with transaction(desk.factory) as session:
        groups.save(session, _contact(session, ADMIN), "Facilities")
    rules = parse_rules(SITE_RULES, source="site-rules.toml")
    with desk.factory() as session:
        groups.check_rules(session, rules)
    desk.intake = Intake(desk.settings, rules, parse_message)
    routed = desk.deliver(mail(subject="The coffee machine is broken")).ticket_id
    other = desk.deliver(mail(subject="Printer jammed")).ticket_id
    assert routed is not None and other is not None
    assert desk.ticket(routed)["group"] == "Facilities"
    assert desk.ticket(other)["group"] == "service-desk"
    with desk.factory() as session:
        opened = session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.open",
                                                          AuditEntry.object_id == routed)).one()
        assert opened.after is not None and opened.after["group"] == "Facilities"


def test_a_desk_without_groups_adopts_those_its_rules_and_tickets_name_once(session_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    desk = make_desk(session_factory, tmp_path)
    number = desk.deliver(mail(subject="Printer jammed")).ticket_id
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        ticket.group = "Old Team"  # named before groups existed
    rules = parse_rules(SITE_RULES, source="site-rules.toml")
    with transaction(desk.factory) as session:
        assert groups.adopt(session, rules) == ["Facilities", "Old Team", "service-desk"]
        assert groups.adopt(session, load_rules(None)) == []  # only while there are none
    with desk.factory() as session:
        groups.check_rules(session, rules)
    assert [e.after["name"] for e in _audit(desk, "group.create") if e.after] == ["Facilities", "Old Team", "service-desk"]


def test_rules_naming_an_unknown_group_are_a_configuration_error(desk: Desk) -> None:
    rules = parse_rules(SITE_RULES, source="site-rules.toml")
    with desk.factory() as session, pytest.raises(groups.GroupError) as caught:
        groups.check_rules(session, rules)
    message = str(caught.value)
    assert "site-rules.toml: rule `coffee` sets group 'Facilities', which is no group" in message
    assert "\n" not in message
    with transaction(desk.factory) as session:
        groups.save(session, _contact(session, ADMIN), "Facilities")
    with desk.factory() as session:
        groups.check_rules(session, rules)


def test_the_catalogues_groups_are_adopted_and_checked_like_the_rules(desk: Desk) -> None:
    """A service request of the catalogue goes to the item's group: on a new desk it exists; later, an item
    naming a group that does not is a configuration error naming the item."""
    catalogue = load_catalogue(None)
    from_items = {i.group for i in catalogue.items if i.group}
    with transaction(desk.factory) as session:
        session.execute(delete(Group))  # a new desk, before its first start
    with transaction(desk.factory) as session:
        created = groups.adopt(session, load_rules(None), catalogue)
    assert from_items <= set(created)
    with desk.factory() as session:
        groups.check_catalogue(session, catalogue, "catalogue.toml")
    item = next(i for i in catalogue.items if i.group)
    renamed = replace(catalogue, items=(replace(item, group="Nobody Here"),))
    with desk.factory() as session, pytest.raises(groups.GroupError) as caught:
        groups.check_catalogue(session, renamed, "catalogue.toml")
    assert f"catalogue.toml: item `{item.code}` sets group 'Nobody Here', which is no group" in str(caught.value)


def _notification(desk: Desk, number: int) -> EmailMessage:
    return [m for rcpt, m in desk.sent("agent notification") if rcpt == AGENT and m["X-Helpdesk-Ticket"] == str(number)][-1]


def test_agent_sets_a_field_and_the_group_by_mail(desk: Desk) -> None:
    _define(desk, "site", FieldType.CHOICE, choices=["Berlin", "Hamburg"])
    number = desk.deliver(mail(subject="Printer jammed")).ticket_id
    assert number is not None
    note = _notification(desk, number)
    desk.deliver(mail(AGENT, f"Re: {note['Subject']}", "#set site=hamburg\n#group network\n#set visit=2026-01-01\n"
                      "#group Nowhere\n", to=note["Reply-To"], in_reply_to=note["Message-ID"]))
    shown = desk.ticket(number)
    assert shown["fields"] == {"site": "Hamburg"}
    assert shown["group"] == "network"
    notes = "\n".join(m["text"] for m in shown["messages"] if m["internal"])
    assert "#set site=hamburg: site -> Hamburg" in notes
    assert "#group network: group -> network" in notes
    assert "#set visit=2026-01-01: not applied, no field 'visit'" in notes
    assert "#group Nowhere: not applied, no group 'Nowhere'" in notes
    with desk.factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None and ticket.group == "network"
    assert [(e.actor, e.after) for e in _audit(desk, "ticket.field")] == [(AGENT, {"site": "Hamburg"})]


def test_an_event_field_is_for_incidents_a_monitoring_alert_opened(desk: Desk) -> None:
    _define(desk, "runbook", FieldType.TEXT, applies_to="event")
    _define(desk, "site", FieldType.TEXT, applies_to="incident")
    alert = desk.deliver(mail("nagios@mon01.example.org", "PROBLEM Service Alert: web01/HTTP is CRITICAL",
                              "Host: web01\nState: CRITICAL\n")).ticket_id
    person = desk.deliver(mail(subject="Printer jammed")).ticket_id
    assert alert is not None and person is not None
    _set(desk, alert, "runbook", "RB-7 restart httpd")
    with pytest.raises(fields.FieldError, match="is for event tickets"):
        _set(desk, person, "runbook", "RB-7")
    with pytest.raises(fields.FieldError, match="is for incident tickets"):
        _set(desk, alert, "site", "Berlin")
    _set(desk, person, "site", "Berlin")
    assert desk.ticket(alert)["fields"] == {"runbook": "RB-7 restart httpd"}
    assert desk.ticket(person)["fields"] == {"site": "Berlin"}
