"""The console in the reader's language: Flask-Babel over the same catalogues as the mail (core.i18n).

The reader's own language (an agent's or a portal requester's contact) wins; else the browser's Accept-Language;
else English.
"""

from __future__ import annotations

from babel.support import NullTranslations
from flask import Flask, request
from flask_babel import Babel, Domain, get_locale, gettext  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import i18n
from helpdesk.core.i18n import N_
from helpdesk.core.language import from_header
from helpdesk.web.security import current_requester, current_user

# The navigation's labels (web.views.NAV), marked here for extraction: the template translates them.
NAV_WORDS = (N_("Queue"), N_("Approvals"), N_("Grants"), N_("Events"), N_("Reports"), N_("Quarantine"),
             N_("Outbox"), N_("Users"), N_("Macros"), N_("Webhooks"), N_("Mailboxes"))
ROLE_WORDS = (N_("user"), N_("agent"), N_("approver"), N_("admin"))


class _Catalogues(Domain):  # type: ignore[misc]
    """Translations from core.i18n (the .po compiled in memory) instead of .mo files on disk."""

    def get_translations(self) -> NullTranslations:
        return i18n.translations(str(get_locale() or i18n.DEFAULT))


def language() -> str:
    """The language this request's pages are in."""
    person = current_user() or current_requester()  # an agent in the console, a requester in the portal
    if person is not None and person.language:
        return person.language
    # (Werkzeug's best_match would take "en;q=0.5" over "de-CH": the tag's own language counts here.)
    return from_header(request.headers.get("Accept-Language")) or i18n.DEFAULT


def install(app: Flask) -> None:
    babel = Babel(app, locale_selector=language, default_locale=i18n.DEFAULT)
    babel.domain_instance = _Catalogues()  # replaces Flask-Babel's loader of .mo files
    app.jinja_env.globals.update(current_language=lambda: str(get_locale() or i18n.DEFAULT), LANGUAGES=i18n.NAMES)
    label = app.jinja_env.filters["label"]
    app.jinja_env.filters["label"] = lambda value: gettext(label(value))  # kinds, statuses: core.i18n.DATA_WORDS


def reason_of(exc: BaseException) -> str:
    """The reason a core refusal gives (core.i18n.Refusal), in this request's language."""
    return i18n.reason(str(get_locale() or i18n.DEFAULT), exc)
