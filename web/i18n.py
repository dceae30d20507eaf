"""The console in the reader's language: Flask-Babel over the same catalogues as the mail (core.i18n).

An agent's own language setting (their contact's) wins; else the browser's Accept-Language; else English.
"""

from __future__ import annotations

from babel.support import NullTranslations
from flask import Flask, request
from flask_babel import Babel, Domain, get_locale, gettext  # type: ignore[import-untyped]

from helpdesk.core import i18n
from helpdesk.core.i18n import N_
from helpdesk.web.security import current_user

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
    user = current_user()
    if user is not None and user.language:
        return user.language
    return request.accept_languages.best_match(i18n.SUPPORTED) or i18n.DEFAULT


def install(app: Flask) -> None:
    babel = Babel(app, locale_selector=language, default_locale=i18n.DEFAULT)
    babel.domain_instance = _Catalogues()  # replaces Flask-Babel's loader of .mo files
    app.jinja_env.globals.update(current_language=lambda: str(get_locale() or i18n.DEFAULT), LANGUAGES=i18n.NAMES)
    label = app.jinja_env.filters["label"]
    app.jinja_env.filters["label"] = lambda value: gettext(label(value))  # kinds, statuses: core.i18n.DATA_WORDS
