"""Catalogues: every marked string is translated into German (nothing fuzzy), and German mail has no English left."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from helpdesk.core import i18n
from helpdesk.core.models import TicketKind, TicketStatus
from helpdesk.core.notify import render

REPO = Path(__file__).resolve().parent.parent


def _marked() -> set[str]:
    """What `make translations` extracts right now (babel.cfg), so a string marked but not yet in the .po fails."""
    with (REPO / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(REPO), method_map, options_map):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_marked_string_is_translated_into_german() -> None:
    with i18n.catalogue_path("de").open("rb") as po:
        catalog = read_po(po, locale="de")
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog
                  if m.id and m.string and all(m.string) and "fuzzy" not in m.flags}
    missing = sorted(_marked() - translated)
    untranslated = [m.id for m in catalog if m.id and (not m.string or not all(m.string) or "fuzzy" in m.flags)]
    assert not untranslated, f"untranslated or fuzzy in de/messages.po: {untranslated}"
    assert not missing, f"not translated (or fuzzy) in de/messages.po, run `make translations`: {missing}"
    with (REPO / "templates/translations/messages.pot").open("rb") as fh:
        pot = read_po(fh)
    in_pot = {m.id if isinstance(m.id, str) else m.id[0] for m in pot if m.id}
    assert in_pot >= _marked(), "messages.pot is behind the code: run `make translations`"


# Sentences of the English mail that must not survive in the German one.
ENGLISH = ("Hello", "we have received", "Reply to this mail", "IT Service Desk", "resolved", "is now",
           "How did we do", "Good", "If it is not", "Access to", "your request", "Priority", "Assignee", "nobody")


def _context(template: str) -> dict[str, object]:
    requester = SimpleNamespace(id=1, name="Greta", email="greta@example.de")
    approver = SimpleNamespace(id=2, name="Paul", email="paul@example.de")
    ticket = SimpleNamespace(id=7, subject="Drucker", priority="P3", category="hardware", kind=TicketKind.INCIDENT,
                             status=TicketStatus.IN_PROGRESS, requester=requester, assignee=None, group="ops")
    when = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
    grant = SimpleNamespace(resource="CRM", contact=requester, revoked_by="paul@example.de", fulfilment_ticket_id=8,
                            expires_at=when)
    request = SimpleNamespace(resource="CRM", requester=requester, beneficiary=requester, decided_by=approver)
    return {
        "ticket": ticket, "settings": SimpleNamespace(address="help@example.org", subject_tag_prefix="#"),
        "tag": "[#7]", "requester_name": "Greta", "kind_label": "incident", "classification": "",
        "not_kept": ["a.pdf"], "size_limit": "25 MB", "survey": SimpleNamespace(good_url="g", bad_url="b"),
        "note": "Erledigt.", "status": "closed", "new": True, "message": None, "comment_address": "c@example.org",
        "requester": requester, "approved": True, "request": request, "reason": "Rolle", "grant": grant,
        "expires_at": when, "what": "CRM", "beneficiary": requester, "source": ticket, "origin": ticket,
        "contact": requester, "link": "https://desk/x", "minutes": 15, "text": "Antwort", "author": approver,
        "step": "in progress", "due_at": when, "checklist": [], "level": "warning", "metric": "response",
        "percent": 80, "elapsed_minutes": 12, "target_minutes": 15,
    }


def test_german_mail_has_no_english_sentence_left() -> None:
    for path in sorted((REPO / "templates/mail").glob("[!_]*.txt")):
        template = path.stem
        subject, text, html = render(template, _context(template), "de")
        english_version = render(template, _context(template), "en")
        assert (subject, text) != english_version[:2], template
        for sentence in ENGLISH:
            for part in (subject, text, html or ""):
                assert sentence not in part.replace("IT-Service-Desk", ""), (template, sentence, part)
