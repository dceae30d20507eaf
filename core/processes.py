"""Starting the ITIL process that a new ticket belongs to.

Intake opens the ticket; this module hands it to its process: request fulfilment for a
catalogue item, access management for an access request, and SLA clocks for everything.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import access, fulfilment, sla, tickets
from core.catalogue import Catalogue
from core.mail import ParsedMail
from core.models import Ticket, TicketKind
from core.settings import Settings


def start(session: Session, settings: Settings, catalogue: Catalogue, ticket: Ticket, mail: ParsedMail) -> None:
    if ticket.kind is TicketKind.ACCESS_REQUEST:
        wanted = access.read_request(mail)
        beneficiary = tickets.contact_for(session, wanted.beneficiary) if wanted.beneficiary else None
        access.open_request(session, settings, ticket.id, resource=wanted.resource, beneficiary=beneficiary)
    elif ticket.kind is TicketKind.SERVICE_REQUEST:
        item = catalogue.get(ticket.catalogue_item) or catalogue.match(f"{mail.subject}\n{mail.reply_text or mail.text}")
        if item is not None:
            fulfilment.start(session, settings, ticket, item)
    sla.start(settings, ticket)
