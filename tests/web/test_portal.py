"""The requester portal: sign-in links by mail, only one's own tickets, the public thread, reply, close."""

from __future__ import annotations

import io
import re
import statistics
import time
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import portal, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Attachment, AuditEntry, Contact, Fulfilment, Outbox, PortalLink, PortalSession, Role, Ticket, TicketKind, TicketStatus, utcnow
from helpdesk.core.notify import OutboundAttachment
from helpdesk.core.privacy import erase_person
from helpdesk.core.settings import Settings
from helpdesk.core.users import find_user, issue_api_token
from tests.web.conftest import STAFF, csrf_token, login, make_ticket

CAROL, DAVE = "carol@example.com", "dave@example.com"
_LINK = re.compile(r"(https?://\S+/portal/sign-in/(\S+))")


def _links(factory: sessionmaker[Session], address: str) -> list[tuple[str, str]]:
    """(URL, token) of every sign-in link queued for ``address``, oldest first."""
    with factory() as session:
        rows = session.scalars(select(Outbox).where(Outbox.purpose == portal.LINK_PURPOSE, Outbox.rcpt == address)
                               .order_by(Outbox.id))
        bodies = [message_from_bytes(r.raw, policy=policy.default).get_body(("plain",)).get_content() for r in rows]  # type: ignore[union-attr]
    return [m.groups() for b in bodies if (m := _LINK.search(b))]  # type: ignore[misc]


def _ask(client: FlaskClient, address: str) -> tuple[int, str]:
    response = client.post("/portal/", data={"email": address, "csrf_token": csrf_token(client, "/portal/")})
    return response.status_code, response.get_data(as_text=True)


def _sign_in(client: FlaskClient, token: str) -> int:
    page = client.get(f"/portal/sign-in/{token}")
    assert page.status_code == 200 and "Sign in" in page.get_data(as_text=True)
    form = {"token": token, "csrf_token": csrf_token(client, f"/portal/sign-in/{token}")}
    return client.post("/portal/sign-in", data=form).status_code


def signed_in(app: Flask, factory: sessionmaker[Session], address: str) -> FlaskClient:
    client = app.test_client()
    assert _ask(client, address)[0] == 200
    assert _sign_in(client, _links(factory, address)[-1][1]) == 302
    return client


def _note(factory: sessionmaker[Session], number: int, text: str) -> None:
    with transaction(factory) as session:
        ticket = session.get(Ticket, number)
        agent = find_user(session, STAFF[Role.AGENT])
        assert ticket is not None and agent is not None
        tickets.add_note(session, ticket, agent, text)


def test_a_requester_signs_in_by_mailed_link_and_sees_only_the_public_thread(app: Flask, factory, settings) -> None:
    mine = make_ticket(factory, "Printer offline", "The printer on floor 2 is offline", requester=CAROL).number
    theirs = make_ticket(factory, "Salary question", "About my salary", requester=DAVE).number
    _note(factory, mine, "Carol's manager says ignore this SECRET-NOTE")
    client = app.test_client()

    status, page = _ask(client, CAROL)
    assert status == 200 and "a sign-in link is on its way" in page
    [(url, token)] = _links(factory, CAROL)
    assert url.startswith(settings.console_url + "/portal/sign-in/")  # the configured address, never the Host header
    assert client.get("/portal/tickets").status_code == 302  # not signed in yet
    assert _sign_in(client, token) == 302

    listing = client.get("/portal/tickets").get_data(as_text=True)
    assert "Printer offline" in listing and "Salary question" not in listing
    page = client.get(f"/portal/tickets/{mine}").get_data(as_text=True)
    assert "The printer on floor 2 is offline" in page and "SECRET-NOTE" not in page
    assert client.get(f"/portal/tickets/{theirs}").status_code == 404  # someone else's reads as missing
    with factory() as session:
        actions = [a for (a,) in session.execute(select(AuditEntry.action).where(AuditEntry.action.like("portal.%")))]
    assert actions == ["portal.link", "portal.sign_in"]


def test_an_unknown_address_gets_the_same_answer_and_no_mail(client: FlaskClient, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    known, unknown = _ask(client, CAROL), _ask(client, "nobody@example.com")
    assert known[0] == unknown[0] == 200
    assert known[1].replace(CAROL, "X") == unknown[1].replace("nobody@example.com", "X")
    assert len(_links(factory, CAROL)) == 1 and _links(factory, "nobody@example.com") == []
    # Staff without tickets of their own are no requesters either.
    assert _ask(client, STAFF[Role.AGENT])[0] == 200 and _links(factory, STAFF[Role.AGENT]) == []


def test_known_and_unknown_addresses_take_the_same_time(app: Flask, factory) -> None:
    """Writing the mail takes longer than not writing it: every answer is held to the same floor."""
    from helpdesk.web.portal import ANSWER_FLOOR

    make_ticket(factory, "Printer offline", requester=CAROL)
    client = app.test_client()
    token = csrf_token(client, "/portal/")
    times: dict[str, list[float]] = {CAROL: [], "nobody@example.com": []}
    for address in [CAROL, "nobody@example.com"] * 3:
        started = time.monotonic()
        assert client.post("/portal/", data={"email": address, "csrf_token": token}).status_code == 200
        times[address].append(time.monotonic() - started)
    assert min(min(t) for t in times.values()) >= ANSWER_FLOOR
    assert abs(statistics.median(times[CAROL]) - statistics.median(times["nobody@example.com"])) < ANSWER_FLOOR / 2


def test_a_link_works_once(app: Flask, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    first = app.test_client()
    _ask(first, CAROL)
    [(_, token)] = _links(factory, CAROL)
    assert _sign_in(first, token) == 302
    second = app.test_client()
    assert _sign_in(second, token) == 400
    assert second.get("/portal/tickets").status_code == 302
    with factory() as session:
        refused = session.scalars(select(AuditEntry).where(AuditEntry.action == "portal.link_refused")).one()
    assert refused.reason == "it was used already"


def test_an_expired_or_forged_link_is_refused(settings: Settings, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    with transaction(factory) as session:
        portal.request_link(session, settings, CAROL, "198.51.100.7", now=utcnow() - timedelta(minutes=16))
    [(_, token)] = _links(factory, CAROL)
    with transaction(factory) as session, pytest.raises(portal.LinkRefused, match="expired"):
        portal.redeem_link(session, settings, token)

    with transaction(factory) as session:
        portal.request_link(session, settings, CAROL, "198.51.100.7")
    (_, fresh) = _links(factory, CAROL)[-1]
    link_id, nonce, signature = fresh.split(".")
    for forged in (f"{link_id}.{nonce}.{'0' * len(signature)}", f"{link_id}.x{nonce}.{signature}", "1.2", "", "99999999999.a.b"):
        with transaction(factory) as session, pytest.raises(portal.LinkRefused):
            portal.redeem_link(session, settings, forged)
    with transaction(factory) as session:  # none of those used it up
        assert portal.redeem_link(session, settings, fresh).email == CAROL


def test_a_link_and_a_session_are_bound_to_the_address(app: Flask, settings: Settings, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    client = signed_in(app, factory, CAROL)
    _ask(client, CAROL)
    (_, unused) = _links(factory, CAROL)[-1]
    assert client.get("/portal/tickets").status_code == 200
    with transaction(factory) as session:  # the person is erased: the contact row stays, under a pseudonym
        erase_person(session, settings, CAROL, actor="admin@example.org")
    assert client.get("/portal/tickets").status_code == 302  # the session ended with the address
    with transaction(factory) as session, pytest.raises(portal.LinkRefused):
        portal.redeem_link(session, settings, unused)
    with factory() as session:  # and nothing of the person's sign-ins is kept
        assert session.scalars(select(PortalSession.id)).all() == []
        assert session.scalars(select(PortalLink.id).where(PortalLink.contact_id.is_not(None))).all() == []


def test_a_link_stops_working_when_the_address_changes(settings: Settings, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    with transaction(factory) as session:
        portal.request_link(session, settings, CAROL, "198.51.100.7")
    [(_, token)] = _links(factory, CAROL)
    with transaction(factory) as session:
        contact = find_user(session, CAROL)
        assert contact is not None
        contact.email = "carol.new@example.com"
    with transaction(factory) as session, pytest.raises(portal.LinkRefused, match="another address"):
        portal.redeem_link(session, settings, token)


def test_links_are_limited_per_address_and_per_client(app: Flask, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    client = app.test_client()
    policy = portal.PortalPolicy()
    assert [_ask(client, CAROL)[0] for _ in range(policy.per_address + 1)] == [200] * policy.per_address + [429]
    assert len(_links(factory, CAROL)) == policy.per_address
    # Unknown addresses count alike (the limit tells nothing about who is on file), and so does the client.
    answers = [_ask(client, f"u{i}@example.com")[0] for i in range(policy.per_client)]
    allowed = policy.per_client - policy.per_address  # a refused request is not counted
    assert answers == [200] * allowed + [429] * (policy.per_client - allowed)
    with factory() as session:
        assert session.scalar(select(PortalLink.id).where(PortalLink.address.contains("@"))) is None  # digests only


def test_a_portal_session_reaches_no_staff_page_and_a_staff_session_no_portal_page(app: Flask, factory) -> None:
    number = make_ticket(factory, "Printer offline", requester=STAFF[Role.AGENT]).number  # an agent asking for help
    as_requester = signed_in(app, factory, STAFF[Role.AGENT])
    assert as_requester.get(f"/portal/tickets/{number}").status_code == 200
    for path in ("/tickets", f"/tickets/{number}", "/admin/users", "/approvals"):
        response = as_requester.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    as_staff = login(app.test_client(), Role.ADMIN)
    response = as_staff.get("/portal/tickets")
    assert response.status_code == 302 and response.headers["Location"].endswith("/portal/")


def test_portal_and_staff_api_tokens_do_not_cross(app: Flask, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    api = app.test_client()
    assert api.post("/api/portal/link", json={"email": CAROL}).status_code == 202
    [(url, _)] = _links(factory, CAROL)
    opened = api.post("/api/portal/session", json={"token": url})
    assert opened.status_code == 201 and opened.json["requester"] == CAROL
    portal_auth = {"Authorization": f"Bearer {opened.json['token']}"}
    assert api.get("/api/portal/tickets", headers=portal_auth).json["tickets"][0]["subject"] == "Printer offline"
    assert api.get("/api/tickets", headers=portal_auth).status_code == 401
    with transaction(factory) as session:
        staff_token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.ADMIN])).one())
    assert api.get("/api/portal/tickets", headers={"Authorization": f"Bearer {staff_token}"}).status_code == 401
    assert api.delete("/api/portal/session", headers=portal_auth).status_code == 204
    assert api.get("/api/portal/tickets", headers=portal_auth).status_code == 401


def test_a_reply_with_a_file_goes_the_mail_reply_way(app: Flask, factory) -> None:
    number = make_ticket(factory, "VPN drops", requester=CAROL).number
    with transaction(factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        tickets.change(session, ticket, STAFF[Role.AGENT], status=TicketStatus.PENDING)  # waiting on Carol
    client = signed_in(app, factory, CAROL)
    form = {"csrf_token": csrf_token(client, f"/portal/tickets/{number}"), "text": "Here is the log you asked for.",
            "files": [(io.BytesIO(b"vpn log lines\n"), "vpn.log")]}
    page = client.post(f"/portal/tickets/{number}/reply", data=form, content_type="multipart/form-data",
                       follow_redirects=True).get_data(as_text=True)
    assert "Reply sent." in page and "Here is the log you asked for." in page
    [link] = re.findall(rf'href="(/portal/tickets/{number}/attachments/\d+)"', page)
    assert client.get(link).data == b"vpn log lines\n"
    with factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None and ticket.status is TicketStatus.OPEN  # the user answered: the clock runs again
        reply = ticket.messages[-1]
        assert (reply.from_address, reply.internal, [a.filename for a in reply.attachments]) == (CAROL, False, ["vpn.log"])
        notified = session.scalars(select(Outbox).where(Outbox.purpose == "agent notification")).all()
        assert {r.rcpt for r in notified} >= {STAFF[Role.AGENT]}


def test_an_internal_notes_file_is_not_downloadable(app: Flask, factory, settings: Settings) -> None:
    number = make_ticket(factory, "Laptop", requester=CAROL).number
    with transaction(factory) as session:
        ticket = session.get(Ticket, number)
        agent = find_user(session, STAFF[Role.AGENT])
        assert ticket is not None and agent is not None
        message, _ = tickets.reply_with_files(session, settings, ticket, agent, "public",
                                              [OutboundAttachment("a.txt", "text/plain", b"a")])
        note = tickets.add_note(session, ticket, agent, "internal")
        note.attachments.append(Attachment(filename="secret.txt", content_type="text/plain", size=1,
                                           sha256=message.attachments[0].sha256))
        session.flush()
        public_id, internal_id = message.attachments[0].id, note.attachments[0].id
    client = signed_in(app, factory, CAROL)
    assert client.get(f"/portal/tickets/{number}/attachments/{public_id}").status_code == 200
    assert client.get(f"/portal/tickets/{number}/attachments/{internal_id}").status_code == 404


def test_the_requester_closes_a_ticket_and_a_watcher_may_not(app: Flask, factory) -> None:
    number = make_ticket(factory, "Monitor flickers", requester=CAROL).number
    with transaction(factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        tickets.add_watchers(session, ticket, [DAVE])
    watcher = signed_in(app, factory, DAVE)
    assert "Monitor flickers" in watcher.get("/portal/tickets").get_data(as_text=True)  # watched tickets show too
    form = {"csrf_token": csrf_token(watcher, f"/portal/tickets/{number}")}
    assert "Only the person who asked" in watcher.post(f"/portal/tickets/{number}/close", data=form,
                                                       follow_redirects=True).get_data(as_text=True)
    client = signed_in(app, factory, CAROL)
    assert client.post(f"/portal/tickets/{number}/close", data={}).status_code == 400  # CSRF as in the console
    form = {"csrf_token": csrf_token(client, f"/portal/tickets/{number}")}
    assert "Ticket closed." in client.post(f"/portal/tickets/{number}/close", data=form, follow_redirects=True).get_data(as_text=True)
    with factory() as session:
        assert session.get(Ticket, number).status is TicketStatus.CLOSED  # type: ignore[union-attr]
        told = session.scalars(select(Outbox.rcpt).where(Outbox.purpose == "status change")).all()
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.change")).all()[-1]
    assert told == [DAVE] and entry.actor == CAROL


def test_a_service_request_shows_its_approval_and_steps(app: Flask, factory) -> None:
    number = make_ticket(factory, "Please install Visio", requester=CAROL, kind=TicketKind.SERVICE_REQUEST).number
    with transaction(factory) as session:
        session.add(Fulfilment(ticket_id=number, item="new-software", approval_needed=True,
                               checklist=[{"step": "Check the licence"}, {"step": "Install"}]))
        ticket = session.get(Ticket, number)
        assert ticket is not None
        tickets.change(session, ticket, "system", status=TicketStatus.AWAITING_APPROVAL)
    client = signed_in(app, factory, CAROL)
    assert client.get(f"/api/portal/tickets/{number}").status_code == 401  # the API wants a portal token, not the cookie
    page = client.get(f"/portal/tickets/{number}").get_data(as_text=True)
    assert "awaiting approval" in page and "Approval of request new-software: <b class=\"approval-status\">pending</b>" in page
    assert "Check the licence" in page and "Close this ticket" not in page
    # In German an approval not yet decided is "open", not the ticket status "waiting for your answer".
    german = client.get(f"/portal/tickets/{number}", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<b class="approval-status">offen</b>' in german


def test_the_openapi_document_describes_every_portal_route(app: Flask, factory) -> None:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.ADMIN])).one())
    doc = app.test_client().get("/api/openapi.json", headers={"Authorization": f"Bearer {token}"}).json
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("portal_api."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api"))
            assert path in doc["paths"], path
            for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
                assert method.lower() in doc["paths"][path], (path, method)


def test_the_link_points_at_the_configured_console(settings: Settings, factory) -> None:
    make_ticket(factory, "Printer offline", requester=CAROL)
    desk = replace(settings, web_url="https://desk.example.org/")
    with transaction(factory) as session:
        portal.request_link(session, desk, CAROL, "198.51.100.7")
    [(url, _)] = _links(factory, CAROL)
    assert url.startswith("https://desk.example.org/portal/sign-in/")


def test_a_signed_in_requester_may_upload_up_to_the_mail_limit(app: Flask, factory) -> None:
    number = make_ticket(factory, "Logs", requester=CAROL).number
    logs = bytes(range(256)) * (12 * 1024)  # 3 MB: over the 2 MB every other form gets
    body = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n\r\n" + logs + b"\r\n--x--\r\n"
    assert app.test_client().post(f"/portal/tickets/{number}/reply", data=body,
                                  content_type="multipart/form-data; boundary=x").status_code == 413
    client = signed_in(app, factory, CAROL)
    form = {"csrf_token": csrf_token(client, f"/portal/tickets/{number}"), "text": "All logs.",
            "files": [(io.BytesIO(logs), "logs.bin")]}
    page = client.post(f"/portal/tickets/{number}/reply", data=form, content_type="multipart/form-data",
                       follow_redirects=True).get_data(as_text=True)
    assert "Reply sent." in page
    with factory() as session:
        assert [a.size for a in session.get(Ticket, number).messages[-1].attachments] == [len(logs)]  # type: ignore[union-attr]
