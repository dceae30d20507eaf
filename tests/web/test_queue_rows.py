"""The queue's rows as the reader sees them: badges, dates and labels in English and in German.

The rows' words are translated once per page (web/pagewords.py); this pins what each row shows.
"""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import Role, SlaLevel, SlaMark, SlaMetric, Ticket, TicketKind, TicketStatus
from tests.web.conftest import login, make_ticket

GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}


def _row(page: str, number: int) -> str:
    """The queue row of ticket ``number``."""
    start = page.index(f'<td><a href="/tickets/{number}">#{number}</a></td>')
    return page[page.rindex("<tr>", 0, start):page.index("</tr>", start)]


def test_queue_rows_show_badges_dates_and_labels_in_the_readers_language(
    app: Flask, factory: sessionmaker[Session]
) -> None:
    breached = make_ticket(factory, "Drucker & Toner <leer>").number
    on_track = make_ticket(factory, "Zugang zum Laufwerk", kind=TicketKind.ACCESS_REQUEST).number
    closed = make_ticket(factory, "Neuer Monitor", kind=TicketKind.SERVICE_REQUEST).number
    with transaction(factory) as session:
        for number, status, at in ((breached, TicketStatus.IN_PROGRESS, datetime(2026, 3, 4, 5, 6)),
                                   (on_track, TicketStatus.PENDING, datetime(2026, 11, 30, 23, 59)),
                                   (closed, TicketStatus.CLOSED, datetime(2025, 1, 2, 0, 0))):
            ticket = session.get(Ticket, number)
            assert ticket is not None
            ticket.status, ticket.updated_at = status, at
        session.add(SlaMark(ticket_id=breached, metric=SlaMetric.RESOLUTION, level=SlaLevel.BREACH,
                            elapsed_seconds=100, target_seconds=80))
    agent = login(app.test_client(), Role.AGENT)
    expected = {
        "en": {
            breached: ('<span class="badge  incident">incident</span>', '<span class="badge  in_progress">in progress</span>',
                       '<span class="badge sla breached">breached</span>', "2026-03-04 05:06",
                       f'aria-label="select #{breached}"', "Drucker &amp; Toner &lt;leer&gt;"),
            on_track: ('<span class="badge  access_request">access request</span>',
                       '<span class="badge  pending">pending</span>', '<span class="badge sla on_track">on track</span>',
                       "2026-11-30 23:59", f'aria-label="select #{on_track}"'),
            closed: ('<span class="badge  service_request">service request</span>',
                     '<span class="badge  closed">closed</span>', "<td></td>", "2025-01-02 00:00"),
        },
        "de": {
            breached: ('<span class="badge  incident">Störung</span>', '<span class="badge  in_progress">in Bearbeitung</span>',
                       '<span class="badge sla breached">verletzt</span>', "2026-03-04 05:06",
                       f'aria-label="#{breached} auswählen"', "Drucker &amp; Toner &lt;leer&gt;"),
            on_track: ('<span class="badge  access_request">Zugriffsanfrage</span>',
                       '<span class="badge  pending">wartet auf Ihre Antwort</span>',
                       '<span class="badge sla on_track">im Plan</span>', "2026-11-30 23:59",
                       f'aria-label="#{on_track} auswählen"'),
            closed: ('<span class="badge  service_request">Serviceanfrage</span>',
                     '<span class="badge  closed">geschlossen</span>', "<td></td>", "2025-01-02 00:00"),
        },
    }
    for language, headers in (("en", {}), ("de", GERMAN)):
        page = agent.get("/tickets?status=any", headers=headers).get_data(as_text=True)
        for number, shown in expected[language].items():
            row = _row(page, number)
            for text in shown:
                assert text in row, (language, number, text)
            assert row.count('class="badge') == (3 if number != closed else 2), (language, number)
