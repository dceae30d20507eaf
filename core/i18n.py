"""The languages the desk speaks and their catalogues (gettext domain ``messages``).

The .po files in the package are the only source: they are read and compiled in memory once per
process and language (a few milliseconds), so an installed desk can never run on a stale .mo.
"""

from __future__ import annotations

import functools
import io
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.support import NullTranslations

DOMAIN = "messages"
DEFAULT = "en"  # the language the templates and code are written in
SUPPORTED = ("en", "de")
NAMES = {"en": "English", "de": "Deutsch"}  # each in its own language, for pickers


def N_(message: str) -> str:
    """Marks a word for extraction that is translated later, where it is shown."""
    return message


# Words that reach mail and pages as data (a ticket's kind and status): translated where shown.
DATA_WORDS = (
    N_("incident"), N_("service request"), N_("access request"), N_("event"),
    N_("new"), N_("open"), N_("pending"), N_("awaiting approval"), N_("in progress"), N_("resolved"), N_("closed"),
    N_("logged"), N_("fulfilled"), N_("approved"), N_("rejected"),
    N_("response"), N_("resolution"),  # SLA targets
    N_("good"), N_("bad"),  # satisfaction ratings
)
# Words the console shows as data (through its label filter): states of mail, events, SLA and sorting.
CONSOLE_WORDS = (
    N_("processed"), N_("duplicate"), N_("ignored"), N_("quarantined"), N_("discarded"),  # inbound mail
    N_("sending"), N_("sent"), N_("failed"),  # outbox and webhook deliveries
    N_("informational"), N_("warning"), N_("exception"),  # event severities
    N_("breached"), N_("at risk"), N_("on track"),  # SLA states
    N_("newest"), N_("oldest"), N_("updated"), N_("priority"), N_("due"), N_("relevance"),  # queue sorting
    N_("password"), N_("app"), N_("delegated"),  # mailbox logins
)


class Refusal(Exception):
    """A refusal whose reason is marked for translation: ``message`` (English, marked with N_, with ``%(name)s``
    placeholders) and its ``params``. ``str()`` is the English text (logs, the JSON API, stored notes); a page
    shows ``reason(language, exc)``. Given another refusal as its message, it keeps that one's words."""

    message: str
    params: dict[str, object]

    def __init__(self, message: str | Refusal = "", /, **params: object) -> None:
        if isinstance(message, Refusal):
            self.message, self.params = message.message, {**message.params, **params}
        else:
            self.message, self.params = message, params
        super().__init__(self.message % self.params if self.params else self.message)


class Unknown(Refusal, LookupError):
    """Something asked for by its number that is not there."""


class Invalid(Refusal, ValueError):
    """A request that cannot be done as asked."""


class Word(str):
    """A data word (a kind, a status: DATA_WORDS) among a refusal's params: translated too where it is shown."""


def supported(tag: str | None) -> str | None:
    """The shipped language a tag like ``de-AT`` or ``EN_gb`` names; None for any other."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in SUPPORTED else None


def catalogue_path(language: str) -> resources.abc.Traversable:
    return resources.files("helpdesk.templates") / "translations" / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(language: str) -> NullTranslations:
    """gettext translations for ``language``; the identity for English and for anything not shipped."""
    # Babel is imported at the first word translated: a process that shows none (a poll of replies,
    # most commands) starts ~0.01 s sooner.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import NullTranslations, Translations

    if supported(language) in (None, DEFAULT):
        return NullTranslations()
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, catalog)  # fuzzy entries are left out: they show in English until reviewed
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def gettext(language: str, message: str, **variables: object) -> str:
    """``message`` in ``language``, with ``%(name)s`` filled from ``variables``."""
    text = translations(language).ugettext(message)
    return text % variables if variables else text


def reason(language: str, exc: BaseException) -> str:
    """The reason ``exc`` gives, in ``language``: a Refusal's marked message, with its Word params translated;
    any other exception's text, translated if it is a marked message (else as it is)."""
    if isinstance(exc, Refusal) and exc.message:
        params = {k: gettext(language, v) if isinstance(v, Word) else v for k, v in exc.params.items()}
        return gettext(language, exc.message, **params)
    text = str(exc)
    return gettext(language, text) if text else text  # (gettext of "" is the catalogue's header)
