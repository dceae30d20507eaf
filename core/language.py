"""Which of the shipped languages a requester writes in, read off one mail.

In order: the Content-Language header, then Accept-Language (some clients send it), then the
body's words. Only languages the desk ships (core.i18n.SUPPORTED) are ever chosen.
"""

from __future__ import annotations

import re

from helpdesk.core.i18n import SUPPORTED, supported
from helpdesk.core.mail import ParsedMail


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Short, frequent words that each language's mail is full of and the other's hardly ever has.
_STOP_WORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the and is are not my with for this that have has can you your please thanks thank hello hi does "
        "doesn't don't it's we our from would could there when after since working again"
    ),
    "de": _words(
        "der die das und ist sind nicht ich mein meine mit für ein eine einen dem den bitte danke hallo kann "
        "können sie ihr wir uns auf bei seit geht funktioniert wieder noch auch mehr leider habe haben wird "
        "schon grüße gruß freundlichen"
    ),
}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_MIN_HITS = 2  # fewer stop words than this is no evidence either way
_SAMPLE = 4000  # characters of the body looked at: the top says enough, a long quote says nothing new


def from_header(value: str | None) -> str | None:
    """The first shipped language of a Content-Language or Accept-Language value, by quality."""
    if not value:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(value.split(",")):
        tag, _, params = item.partition(";")
        quality = 1.0
        match = re.search(r"q\s*=\s*([^\s;]*)", params)
        if match:
            try:
                quality = float(match.group(1))
            except ValueError:
                continue
        language = supported(tag)
        if language and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None


def detect(text: str) -> str | None:
    """The shipped language whose stop words ``text`` uses clearly more; None when unclear."""
    words = [w.lower() for w in _WORD.findall(text[:_SAMPLE])]
    hits = {lang: sum(w in _STOP_WORDS[lang] for w in words) for lang in SUPPORTED}
    best, second = sorted(hits.values(), reverse=True)[:2]
    if best < _MIN_HITS or best == second:
        return None
    return next(lang for lang, n in hits.items() if n == best)


def of_mail(mail: ParsedMail) -> str | None:
    """The language ``mail`` is written in, as far as the headers or its words tell; else None."""
    return (
        from_header(mail.header("content-language"))
        or from_header(mail.header("accept-language"))
        or detect(f"{mail.subject}\n{mail.reply_text or mail.text}")
    )
