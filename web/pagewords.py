"""A list page's repeated words, translated once per page instead of once per row.

The queue shows 50 rows, each with three badges (kind, status, SLA) drawn from some 15 values and a
checkbox labelled "select #N". Through macros.html's badge and the ``label`` filter each of them was
a macro call, a Flask-Babel context lookup and a catalogue lookup: ~200 lookups for ~15 distinct badges.
Here the page's catalogue is looked up once and each distinct badge is made once.
"""

from __future__ import annotations

from flask_babel import get_translations  # type: ignore[import-untyped, unused-ignore]
from markupsafe import Markup

from helpdesk.core.i18n import N_
from helpdesk.web.views import label

SELECT = N_("select #%(number)s")


class PageWords:
    """Made in the view, used by its template for the one page; in the request's language."""

    def __init__(self) -> None:
        self._gettext = get_translations().ugettext
        self._select = self._gettext(SELECT)
        self._badges: dict[tuple[object, str], Markup] = {}

    def badge(self, value: object, kind: str = "") -> Markup:
        """What macros.html's ``badge(value, kind)`` renders (value and text escaped the same way)."""
        key = (value, kind)
        made = self._badges.get(key)
        if made is None:
            made = Markup('<span class="badge {} {}">{}</span>').format(
                kind, getattr(value, "value", value), self._gettext(label(value))
            )
            self._badges[key] = made
        return made

    def select(self, number: int) -> str:
        """The label of a row's checkbox: ``_("select #%(number)s", number=number)``."""
        return str(self._select % {"number": number})
