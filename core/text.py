"""Text from mail that we put into other mail (names, subjects): one line, printable, of bounded length.

A display name or subject is read from one unauthenticated mail and repeated in later mail to
others; a CR/LF in it would start a new header or body line there.
"""

from __future__ import annotations

import unicodedata

NAME_LIMIT = 100
SUBJECT_LIMIT = 2000


def one_line(value: str | None, limit: int) -> str:
    """``value`` on one line of at most ``limit`` characters.

    Control and format characters (CR, LF, ESC, bidi overrides...) become spaces, and runs of
    whitespace (including Unicode line separators) one space.
    """
    if not value:
        return ""
    if not value.isprintable():
        value = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in value)
    return " ".join(value.split())[:limit].rstrip()


def display_name(value: str | None) -> str | None:
    """A display name fit to show and to mail; None when nothing is left."""
    return one_line(value, NAME_LIMIT) or None
