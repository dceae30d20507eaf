"""The language the desk writes to a person in: learnt from their first mail, changed by agents. Audited."""

from __future__ import annotations

from sqlalchemy.orm import Session

from helpdesk.core import audit, i18n, language
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import Contact


class UnknownLanguage(i18n.Refusal, ValueError):
    """A language the desk does not ship."""


def set_language(
    session: Session, contact: Contact, wanted: str | None, *, actor: str, reason: str | None = None
) -> bool:
    """Make ``wanted`` (a shipped language, or None for the default) the contact's; True if it changed."""
    chosen = i18n.supported(wanted) if wanted else None
    if wanted and chosen is None:
        raise UnknownLanguage(i18n.N_("unknown language %(language)r: one of %(known)s"), language=wanted[:20],
                              known=", ".join(i18n.SUPPORTED))
    if chosen == contact.language:
        return False
    before = {"language": contact.language}
    contact.language = chosen
    session.flush()
    audit.record(session, actor=actor, action="contact.language", object_type="contact", object_id=contact.id,
                 before=before, after={"language": chosen}, reason=reason)
    return True


def learn_language(session: Session, contact: Contact, mail: ParsedMail) -> None:
    """A contact with no language yet takes their mail's (an agent's choice is never overwritten)."""
    if contact.language is None and (found := language.of_mail(mail)) is not None:
        set_language(session, contact, found, actor=audit.SYSTEM, reason="read from the mail")
