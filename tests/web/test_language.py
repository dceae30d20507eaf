"""The console in the reader's language (Chromium with a German locale), and the requester's language set by agents.

Mail in through intake, the page in the browser, the change audited, mail out to SMTP in the chosen language.
"""

from __future__ import annotations

import re
import threading

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import access, audit, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import (
    AccessRequest,
    Contact,
    Event,
    Inbound,
    InboundStatus,
    Outbox,
    OutboxStatus,
    RawMail,
    Role,
    Severity,
    Ticket,
    TicketKind,
    TicketStatus,
)
from helpdesk.core.settings import Settings, SmtpSettings
from helpdesk.core.users import issue_api_token
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import Desk, mail
from tests.core.test_language import ENGLISH, GERMAN
from tests.web.browser import LiveServer, log_in, screenshot
from tests.web.conftest import STAFF, csrf_token, login, make_ticket

# English text of the console pages that must not be left on a German page.
ENGLISH_ON_PAGES = ("Log out", "Search subject and text", "any kind", "Reset", "Requester", "Updated",
                    "Conversation", "as the mail reads", "Queue", "Public reply", "Internal note", "Audit trail",
                    "Why it was classified so", "Group and fields", "Send reply", "Merge this ticket")


def _send(factory: sessionmaker[Session], sink) -> None:  # type: ignore[no-untyped-def]
    worker = threading.Thread(target=send_once, args=(factory, SmtpSettings(host=sink.host, port=sink.port)))
    worker.start()
    worker.join(30)


def test_german_browser_gets_german_console_and_agent_switches_requester_to_english(
    browser, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink  # type: ignore[no-untyped-def]
) -> None:
    desk = Desk(factory, settings)
    number = desk.deliver(mail("greta@example.de", "Drucker defekt", GERMAN)).ticket_id
    _send(factory, smtp_sink)
    ack = next(m.message for m in smtp_sink.wait_for(1) if m.rcpt_tos == ["greta@example.de"])
    assert "wir haben Ihre Nachricht erhalten" in ack.get_body(("plain",)).get_content()

    context = browser.new_context(locale="de-DE", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{live.url}/login")
        assert page.inner_text("h1") == "Anmelden" and page.get_attribute("html", "lang") == "de"
        log_in(page, live, Role.AGENT)
        text = page.inner_text("body")
        assert "Warteschlange" in text and "Abmelden" in text and "Störung" in text
        page.goto(f"{live.url}/tickets/{number}")
        screenshot(page, "ticket-german")
        text = page.inner_text("body")
        assert "Öffentliche Antwort" in text and "Änderungsprotokoll" in text
        for english in ENGLISH_ON_PAGES:
            assert english not in text, english
        page.select_option("form.requester-language select", "en")
        page.click("form.requester-language button")
        page.wait_for_selector("text=Sprache von greta@example.de: en")
    finally:
        context.close()

    with factory() as session:
        greta = session.scalars(select(Contact).where(Contact.email == "greta@example.de")).one()
        assert greta.language == "en"
        last = audit.history(session, "contact", greta.id)[-1]
        assert (last.actor, last.before, last.after) == (STAFF[Role.AGENT], {"language": "de"}, {"language": "en"})
    # Her next ticket, though in German words, is acknowledged in English: the agent's choice stands.
    desk.deliver(mail("greta@example.de", "Noch ein Drucker", GERMAN))
    _send(factory, smtp_sink)
    later = [m.message for m in smtp_sink.wait_for(2) if m.rcpt_tos == ["greta@example.de"]][-1]
    assert "we have received your message" in later.get_body(("plain",)).get_content()


def test_api_reads_and_sets_a_contacts_language(app: Flask, factory: sessionmaker[Session],
                                                settings: Settings) -> None:
    Desk(factory, settings).deliver(mail("ed@example.com", "Printer broken", ENGLISH))
    with transaction(factory) as session:
        ed = tickets.contact_for(session, "ed@example.com")
        agent = session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one()
        approver = session.scalars(select(Contact).where(Contact.email == STAFF[Role.APPROVER])).one()
        auth = {"Authorization": f"Bearer {issue_api_token(session, agent)}"}
        approver_auth = {"Authorization": f"Bearer {issue_api_token(session, approver)}"}
        ed_id = ed.id
    client = app.test_client()
    assert client.get(f"/api/contacts/{ed_id}", headers=auth).json["language"] == "en"
    changed = client.put(f"/api/contacts/{ed_id}/language", json={"language": "de-AT"}, headers=auth)
    assert changed.status_code == 200 and changed.json["language"] == "de"
    refused = client.put(f"/api/contacts/{ed_id}/language", json={"language": "fr"}, headers=auth)
    assert refused.status_code == 400 and "unknown language 'fr'" in refused.json["error"]
    assert client.put(f"/api/contacts/{ed_id}/language", json={"language": "en"},
                      headers=approver_auth).status_code == 403
    assert client.put(f"/api/contacts/{ed_id}/language", json=["de"], headers=auth).status_code == 400
    assert client.get("/api/contacts/999999", headers=auth).status_code == 404
    with factory() as session:
        assert [e.after for e in audit.history(session, "contact", ed_id)] == [{"language": "en"}, {"language": "de"}]
    paths = client.get("/api/openapi.json", headers=auth).json["paths"]
    assert "put" in paths["/contacts/{contact_id}/language"] and "get" in paths["/contacts/{contact_id}"]


def test_portal_pages_follow_the_browsers_language(app: Flask) -> None:
    client = app.test_client()
    german = client.get("/portal/", headers={"Accept-Language": "de-CH, en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="de">' in german and "Ihre Tickets" in german and "Anmeldelink per Mail senden" in german
    for english in ("Your tickets", "Mail me a sign-in link", "Type the address"):
        assert english not in german
    english_page = client.get("/portal/", headers={"Accept-Language": "fr, en;q=0.8"}).get_data(as_text=True)
    assert "Your tickets" in english_page


def test_a_failed_login_is_told_in_the_browsers_language(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login", headers={"Accept-Language": "de"}).get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.post("/login", data={"email": STAFF[Role.AGENT], "password": "wrong password!", "csrf_token": token},
                         headers={"Accept-Language": "de"})
    assert answer.status_code == 401 and "E-Mail-Adresse oder Passwort ist falsch." in answer.get_data(as_text=True)


def _console_data(factory: sessionmaker[Session], settings: Settings) -> dict[str, int]:
    """One of each thing the console lists: an access request and a grant, a failed mail, a quarantined mail, an event."""
    asked = make_ticket(factory, "Zugang Lohnbuchhaltung", "bitte Zugang", kind=TicketKind.ACCESS_REQUEST,
                        requester="dora@example.de")
    granted = make_ticket(factory, "Zugang CRM", "bitte Zugang", kind=TicketKind.ACCESS_REQUEST,
                          requester="emil@example.de")
    with transaction(factory) as session:
        access.open_request(session, settings, asked.number, resource="payroll")
        approver = session.scalars(select(Contact).where(Contact.email == STAFF[Role.APPROVER])).one()
        second = access.open_request(session, settings, granted.number, resource="crm")
        access.decide(session, settings, session.get(AccessRequest, second.id), approver, True, "ok")
        session.add(Outbox(message_id="<o1@example.org>", purpose="reply", mail_from="help@example.org",
                           recipients=["u@example.com"], raw=b"x", status=OutboxStatus.FAILED, last_error="550 nope"))
        session.add(RawMail(sha256="0" * 64, size=4, data=b"junk"))
        inbound = Inbound(source="INBOX", sha256="0" * 64, status=InboundStatus.QUARANTINED, reason="unreadable")
        session.add(inbound)
        session.add(Event(source="nagios", host="db1", state="WARNING", severity=Severity.WARNING, fingerprint="f1",
                          summary="disk 91% full"))
        session.flush()
        return {"ticket": asked.number, "inbound": inbound.id}


# Per console page: German text it must show, and the English it shows today that must be gone.
GERMAN_PAGES = {
    "/admin/fields": (Role.ADMIN, ("Feld hinzufügen", "Bezeichnung", "Pflichtfeld", 'aria-label="Feldschlüssel"'),
                      ("Add a field", "Choices (one a line)", "No fields yet.", "required")),
    "/admin/groups": (Role.ADMIN, ("Gruppe hinzufügen", "Mitglieder", "Noch keine Gruppen."),
                      ("Add a group", "Members", "Email alias", "teams of agents")),
    "/admin/macros": (Role.ADMIN, ("Textbaustein hinzufügen", "Platzhalter:", "die Nummer des Tickets", "unverändert"),
                      ("Add a macro", "Placeholders", "the ticket's number", "leave")),
    "/admin/mailboxes": (Role.ADMIN, ("Kein Postfach ist eingerichtet.",), ("No mailbox is configured.",)),
    "/admin/outbox?show=failed": (Role.ADMIN, ("Letzter Fehler", "Erneut versuchen", "gescheitert", "Versuche"),
                                  ("Last error", "Retry", "Attempts", "failed")),
    "/admin/quarantine": (Role.ADMIN, ("Erneut verarbeiten", "Verwerfen", "Empfangen", 'placeholder="warum verwerfen"'),
                          ("Requeue", "Discard", "Received", "why discard")),
    "/admin/quarantine/{inbound}": (Role.ADMIN, ("Eingehende Mail", "Kopfzeilen", "in Quarantäne", "Grund:"),
                                    ("Inbound mail", "Headers", "Reason:", "bytes")),
    "/admin/users": (Role.ADMIN, ("Benutzer hinzufügen", "kein Konsolenzugang", "Rolle", "Nur für Ereignisse ausstellen"),
                     ("Add a user", "no console access", "Issue events-only", "new password")),
    "/admin/webhooks": (Role.ADMIN, ("Webhook hinzufügen", "Noch keine Webhooks.", "Jede Anfrage trägt", "aktiviert"),
                        ("Add a webhook", "No webhooks yet.", "Each request carries", "enabled")),
    "/approvals": (Role.APPROVER, ("Zugriffsgenehmigungen", "Genehmigen", "Ablehnen", "Beantragt von"),
                   ("Access approvals", "Approve", "Reject", "Asked by")),
    "/approvals/grants": (Role.APPROVER, ("Berechtigungsverzeichnis", "Ressource", "Entziehen", "aktiv"),
                          ("Grant register", "Resource", "Revoke", "Expires")),
    "/events": (Role.AGENT, ("Letzte Ereignisse", "Schweregrad", "Warnung", "Keine offenen Alarm-Störungen."),
                ("Recent events", "Severity", "warning", "No open alert incidents.")),
    "/reports": (Role.AGENT, ("Eröffnet je Woche, nach Art", "SLA-Einhaltung", "Laufen bald ab", "erste Reaktion",
                              "Serviceanfrage"),
                 ("Opened per week", "SLA compliance", "Expiring soon", "first response", "service request")),
    "/tickets": (Role.AGENT, ('aria-label="Suche"', 'aria-label="Sortierung"', "Sortierung: neueste", "im Plan"),
          ("sort: newest", "on track", 'aria-label="search"', 'aria-label="select #')),
    "/tickets/{ticket}": (Role.AGENT, ("Öffentliche Antwort", "Interne Notiz", "Änderungsprotokoll", "Gruppe und Felder",
                                       "Warum so eingestuft", "Zugriffsanfrage", "Kategorie", 'aria-label="Antworttext"'),
                          ("Public reply", "Internal note", "Audit trail", "Group and fields", "Why it was classified",
                           "Send reply", "Access request", "category", "impact", "unassigned", 'aria-label="reply text"')),
}


def _visible(page: str) -> str:
    """The page's text without tags (class names and URLs are not text), attributes kept apart by the caller."""
    body = page.split("<main>", 1)[1]  # the header's navigation is tested elsewhere
    return re.sub(r"<[^>]+>", " ", body)


def test_every_console_page_is_german_for_a_german_browser(app: Flask, factory: sessionmaker[Session],
                                                           settings: Settings) -> None:
    made = _console_data(factory, settings)
    clients = {role: login(app.test_client(), role) for role in (Role.ADMIN, Role.AGENT, Role.APPROVER)}
    for path, (role, german, english) in GERMAN_PAGES.items():
        url = path.format(**made)
        answer = clients[role].get(url, headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
        assert answer.status_code == 200, url
        page = answer.get_data(as_text=True)
        for word in german:
            assert word in (page if "=" in word else _visible(page)), (url, word)
        for word in english:
            assert word not in (page if "=" in word else _visible(page)), (url, word)
        # English stays the default: the same page without Accept-Language shows today's labels.
        assert english[0] in _visible(clients[role].get(url).get_data(as_text=True)), (url, english[0])


def test_console_actions_are_answered_in_the_browsers_language(app: Flask, factory: sessionmaker[Session],
                                                               settings: Settings) -> None:
    made = _console_data(factory, settings)
    german = {"Accept-Language": "de"}

    def post(role: Role, url: str, data: dict[str, str], page: str) -> str:
        client = login(app.test_client(), role)
        token = csrf_token(client, page)
        answer = client.post(url, data={**data, "csrf_token": token}, headers=german, follow_redirects=True)
        return str(answer.get_data(as_text=True))

    field = post(Role.ADMIN, "/admin/fields", {"key": "asset", "label": "Asset", "type": "text",
                                                "applies_to": "incident"}, "/admin/fields")
    assert "Feld asset gespeichert." in field, re.findall(r"class=\"flash[^<]*", field)
    assert "Field asset saved." not in field
    note = post(Role.AGENT, f"/tickets/{made['ticket']}/note", {"text": "intern"}, f"/tickets/{made['ticket']}")
    assert "Notiz hinzugefügt." in note and "Note added." not in note
    unchanged = post(Role.AGENT, f"/tickets/{made['ticket']}/change", {}, f"/tickets/{made['ticket']}")
    assert "Nichts zu ändern." in unchanged and "Nothing to change." not in unchanged
    no_reason = post(Role.APPROVER, "/approvals/grants/1/revoke", {}, "/approvals/grants")
    assert "Bitte geben Sie an, warum der Zugriff entzogen wird." in no_reason
    no_user = post(Role.ADMIN, "/admin/users", {"email": "", "role": "agent", "password": ""}, "/admin/users")
    assert "Eine E-Mail-Adresse wird benötigt." in no_user
    missing = login(app.test_client(), Role.ADMIN).get("/admin/quarantine/999999", headers=german)
    assert missing.status_code == 404 and "Diese eingehende Mail gibt es nicht." in missing.get_data(as_text=True)
    stock = login(app.test_client(), Role.AGENT).get("/no-such-page", headers=german).get_data(as_text=True)
    assert "404 · Nicht gefunden" in stock and "Die angeforderte Adresse gibt es auf diesem Server nicht." in stock


def _post(app: Flask, role: Role, url: str, data: dict[str, str], page: str, language: str = "de") -> str:
    """A console form sent by a browser in ``language``; the page it ends on."""
    client = login(app.test_client(), role)
    token = csrf_token(client, page)
    answer = client.post(url, data={**data, "csrf_token": token}, headers={"Accept-Language": language},
                         follow_redirects=True)
    return str(answer.get_data(as_text=True))


def _flashed(page: str) -> list[str]:
    return re.findall(r'class="flash[^>]*>([^<]*)', page)


def test_the_approval_policys_refusal_is_told_in_the_browsers_language(
        app: Flask, factory: sessionmaker[Session], settings: Settings) -> None:
    own = make_ticket(factory, "Zugang Lager", "bitte Zugang", kind=TicketKind.ACCESS_REQUEST,
                      requester=STAFF[Role.APPROVER])
    with transaction(factory) as session:
        mine = access.open_request(session, settings, own.number, resource="warehouse").id
    approval = (f"/approvals/{mine}/decide", {"decision": "approve"}, "/approvals")
    german = _post(app, Role.APPROVER, *approval)
    assert "Abgelehnt: approver@example.org hat diese Anfrage gestellt und kann nicht über sie entscheiden" in german, \
        _flashed(german)
    assert "made this request" not in german
    english = _post(app, Role.APPROVER, *approval, language="en")
    assert "Refused: approver@example.org made this request and cannot decide it" in english, _flashed(english)


def test_refused_merges_and_status_changes_are_told_in_the_browsers_language(
        app: Flask, factory: sessionmaker[Session], settings: Settings) -> None:
    made = _console_data(factory, settings)
    loose = make_ticket(factory, "Drucker", "Der Drucker druckt nicht")
    done = make_ticket(factory, "Bildschirm", "erledigt")
    with transaction(factory) as session:
        tickets.change(session, session.get(Ticket, done.number), "agent@example.org", status=TicketStatus.CLOSED)
    page = f"/tickets/{loose.number}"
    # Merges core.merge refuses: into itself, into a closed ticket; and the console's own: no number given.
    itself = _post(app, Role.AGENT, f"/tickets/{loose.number}/merge", {"into": str(loose.number)}, page)
    assert f"#{loose.number} kann nicht mit sich selbst zusammengeführt werden" in itself, _flashed(itself)
    assert "cannot be merged" not in itself
    closed = _post(app, Role.AGENT, f"/tickets/{loose.number}/merge", {"into": str(done.number)}, page)
    assert f"#{done.number} ist geschlossen: Führen Sie mit einem offenen Ticket zusammen" in closed, _flashed(closed)
    nowhere = _post(app, Role.AGENT, f"/tickets/{loose.number}/merge", {"into": ""}, page)
    assert "Geben Sie die Nummer des Tickets an, mit dem zusammengeführt werden soll" in nowhere, _flashed(nowhere)
    # Status changes a process does not allow.
    by_hand = _post(app, Role.AGENT, f"/tickets/{loose.number}/change", {"status": "awaiting_approval"}, page)
    assert "Ein Ticket wartet nur dann auf Genehmigung, wenn sein Prozess eine verlangt" in by_hand, _flashed(by_hand)
    waiting = _post(app, Role.AGENT, f"/tickets/{made['ticket']}/change", {"status": "resolved"},
                    f"/tickets/{made['ticket']}")
    assert f"#{made['ticket']} wartet auf Genehmigung: Genehmigen oder lehnen Sie es zuerst ab" in waiting, \
        _flashed(waiting)
    english = _post(app, Role.AGENT, f"/tickets/{loose.number}/change", {"status": "awaiting_approval"}, page, "en")
    assert "a ticket awaits approval only when its process asks for one" in english, _flashed(english)
    # The JSON API stays English (it is for machines), whatever the client's language.
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())
    api = app.test_client().post(f"/api/tickets/{loose.number}/merge", json={"into": loose.number},
                                 headers={"Accept-Language": "de", "Authorization": f"Bearer {token}"})
    assert api.status_code == 422 and api.json == {"error": f"#{loose.number} cannot be merged into itself"}


def test_a_refusal_naming_a_state_names_it_in_the_browsers_language(
        app: Flask, factory: sessionmaker[Session], settings: Settings) -> None:
    """The state in "inbound mail N is processed, not quarantined" is German too (core.i18n.Word)."""
    made = _console_data(factory, settings)
    url = f"/admin/quarantine/{made['inbound']}/requeue"
    assert "wieder eingereiht" in _post(app, Role.ADMIN, url, {}, "/admin/quarantine")
    again = _post(app, Role.ADMIN, url, {}, "/admin/quarantine")
    assert f"Eingehende Mail {made['inbound']} ist " in again and "nicht in Quarantäne" in again, _flashed(again)
    assert "not quarantined" not in again


def test_the_backlogs_age_buckets_are_in_the_browsers_language(app: Flask) -> None:
    agent = login(app.test_client(), Role.AGENT)
    german = agent.get("/reports", headers={"Accept-Language": "de"}).get_data(as_text=True)
    for bucket in ("&lt; 1 Tag", "1–3 Tage", "3–7 Tage", "7–30 Tage", "&gt; 30 Tage"):
        assert bucket in german, bucket
    assert "1-3d" not in german and "7-30d" not in german
    assert "1-3d" in agent.get("/reports").get_data(as_text=True)  # English stays the default
