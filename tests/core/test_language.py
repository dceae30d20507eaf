"""The requester's language: read off the mail (headers, then words), kept on the contact, used for their mail."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import audit, contacts, portal, tickets
from helpdesk.core.db import transaction
from helpdesk.core.language import detect, from_header, of_mail
from helpdesk.core.mail import ParsedMail
from tests.core.desk import mail, make_desk

GERMAN = "Hallo, mein Drucker im dritten Stock geht seit heute nicht mehr. Können Sie bitte helfen? Danke"
ENGLISH = "Hello, my printer on the third floor is not working since this morning. Can you please help? Thanks"


@pytest.mark.parametrize(("value", "expected"), [
    ("de-DE", "de"), ("en", "en"), ("DE_at", "de"), ("fr-FR, de;q=0.5, en;q=0.9", "en"),
    ("fr, it", None), ("de;q=0, en;q=0.1", "en"), ("", None), (None, None), ("de;q=x, en", "en"),
])
def test_language_from_content_or_accept_language(value: str | None, expected: str | None) -> None:
    assert from_header(value) == expected


def test_body_language_detected_among_shipped_languages_only() -> None:
    assert detect(GERMAN) == "de"
    assert detect(ENGLISH) == "en"
    assert detect("VPN down") is None  # too few words to tell
    assert detect("Bonjour, mon imprimante ne marche plus depuis ce matin.") is None


def test_headers_come_before_the_body() -> None:
    def parsed(body: str, **headers: str) -> ParsedMail:
        return ParsedMail(from_=None, text=body, headers={k.lower(): [v] for k, v in headers.items()})

    assert of_mail(parsed(ENGLISH, **{"Content-Language": "de-DE"})) == "de"
    assert of_mail(parsed(GERMAN, **{"Accept-Language": "en-GB, de;q=0.5"})) == "en"
    assert of_mail(parsed(GERMAN, **{"Content-Language": "fr"})) == "de"  # not shipped: the words decide
    assert of_mail(parsed("ok")) is None


def test_german_mail_gets_german_acknowledgement_and_keeps_the_language(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.deliver(mail("greta@example.de", "Drucker defekt", GERMAN))
    desk.deliver(mail("ed@example.com", "Printer broken", ENGLISH))
    acks = dict(desk.sent("acknowledgement"))
    german, english = acks["greta@example.de"], acks["ed@example.com"]
    assert german["Content-Language"] == "de" and "wir haben Ihre Nachricht erhalten" in german.get_body(
        ("plain",)).get_content()
    assert "we have received your message" in english.get_body(("plain",)).get_content()
    # The next mail from Greta, even a short one in English words, is answered in German: the contact keeps it.
    desk.deliver(mail("greta@example.de", "VPN", "VPN down"))
    later = [m for rcpt, m in desk.sent("acknowledgement") if rcpt == "greta@example.de"][-1]
    assert "Antworten Sie auf diese Mail" in later.get_body(("plain",)).get_content()
    with sqlite_session_factory() as session:
        greta = tickets.contact_for(session, "greta@example.de")
        [entry] = audit.history(session, "contact", greta.id)
        assert (entry.action, entry.after, entry.reason) == ("contact.language", {"language": "de"}, "read from the mail")


def test_agent_sets_language_audited_and_unknown_refused(sqlite_session_factory: sessionmaker[Session]) -> None:
    with transaction(sqlite_session_factory) as session:
        contact = tickets.contact_for(session, "ed@example.com")
        assert contacts.set_language(session, contact, "de-CH", actor="agent@example.org")
        assert not contacts.set_language(session, contact, "de", actor="agent@example.org")  # no change, no entry
        with pytest.raises(contacts.UnknownLanguage, match="unknown language 'fr'"):
            contacts.set_language(session, contact, "fr", actor="agent@example.org")
        assert contacts.set_language(session, contact, None, actor="agent@example.org")
        contact_id = contact.id
    with sqlite_session_factory() as session:
        entries = audit.history(session, "contact", contact_id)
        assert [(e.actor, e.before, e.after) for e in entries] == [
            ("agent@example.org", {"language": None}, {"language": "de"}),
            ("agent@example.org", {"language": "de"}, {"language": None}),
        ]
        assert audit.verify(session).ok


def test_portal_link_and_sender_name_in_the_contacts_language(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.deliver(mail("greta@example.de", "Drucker defekt", GERMAN))
    with transaction(sqlite_session_factory) as session:
        assert portal.request_link(session, desk.settings, "greta@example.de", "192.0.2.1") is portal.LinkOutcome.MAILED
    [(_, link)] = desk.sent(portal.LINK_PURPOSE)
    assert link["Subject"] == "Ihr Anmeldelink für den IT-Service-Desk" and link["Content-Language"] == "de"
    assert "Mit diesem Link melden Sie sich an" in link.get_body(("plain",)).get_content()
    [(_, ack)] = desk.sent("acknowledgement")
    assert link["From"].addresses[0].display_name == ack["From"].addresses[0].display_name == "IT-Service-Desk"
