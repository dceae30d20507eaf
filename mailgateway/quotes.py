"""The new part of a reply: quoted history and signature stripped.

mail-parser-reply does the main work (reply headers in many languages, signatures,
disclaimers). Two small generic rules catch what its language tables miss: ``>``-quoted
blocks with the attribution line before them, and Outlook-style header blocks
("От: ... / Отправлено: ... / Кому: ...") in any language.
"""

from __future__ import annotations

import re

from mailparser_reply import EmailReplyParser
from mailparser_reply.parser import EmailMessage

# Languages whose reply headers ("On ... wrote:", "Am ... schrieb:") are recognised.
_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh"]
MAX_REPLY_INPUT = 200_000  # characters; the library's regexes are not linear on hostile text

_LABEL = re.compile(r"^\s*\*?[^\s:][^:]{0,30}:\*?\s")
_FROM_LABEL = re.compile(
    r"^\s*\*?(from|von|de|da|van|od|от|från|fra|fran|lähettäjä|feladó|差出人|发件人|寄件者|보낸 사람)\s*:",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(r"^\s*-{2,}\s*[^-]{3,40}\s*-{2,}\s*$")
_ATTRIBUTION_HINT = re.compile(r"@|\d{1,4}[./:-]\d{1,2}")


class _Reply(EmailMessage):  # type: ignore[misc]  # mail-parser-reply is untyped: its class is Any to mypy
    """The library's message with its three big regexes built once, not for every mail."""

    _compiled: tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if _Reply._compiled is None:
            _Reply._compiled = (self.HEADER_REGEX, self.DISCLAIMERS_REGEX, self.SIGNATURE_REGEX)
        self._header_regex, self._disclaimers_regex, self._signature_regex = _Reply._compiled


# The languages as the library's parser normalises them (lower-cased, known ones only).
_READ_LANGUAGES = EmailReplyParser(languages=_LANGUAGES).languages


def latest_reply(text: str) -> str | None:
    """What ``EmailReplyParser(languages=_LANGUAGES).parse_reply(text)`` gives, faster."""
    latest: str | None = _Reply(text=text, languages=list(_READ_LANGUAGES)).read().latest_reply
    return latest


def strip_quotes(text: str) -> str:
    """The latest reply in ``text``; the full text when nothing can be told apart."""
    if not text.strip():
        return ""
    try:
        reply = latest_reply(text[:MAX_REPLY_INPUT])
    except Exception:  # noqa: BLE001 - the full text is always a safe answer
        reply = None
    reply = _as_in_original(text, reply or text)
    reply = _cut_header_block(_drop_quoted_blocks(reply))
    return reply.strip() or text.strip()


def _as_in_original(text: str, reply: str) -> str:
    """The library trims every line; when its reply is a prefix of the text, keep the
    original lines (a signature separator is "-- " with its space)."""
    wanted = [line.strip() for line in reply.strip().split("\n")]
    original = text.strip("\n").split("\n")
    if len(wanted) > len(original):
        return reply
    if all(o.strip() == w for o, w in zip(original, wanted, strict=False)):  # the original's first lines
        return "\n".join(original[: len(wanted)])
    return reply


def _drop_quoted_blocks(text: str) -> str:
    """Remove ``>`` lines and the attribution ("On ... wrote:") just before each block."""
    lines = text.split("\n")
    if not any(line.lstrip().startswith(">") for line in lines):
        return text
    kept: list[str] = []
    for line in lines:
        if line.lstrip().startswith(">"):
            _drop_attribution(kept)
            continue
        kept.append(line)
    return "\n".join(kept) if "".join(kept).strip() else text


def _drop_attribution(kept: list[str]) -> None:
    end = len(kept)
    while end and not kept[end - 1].strip():
        end -= 1
    if not end or not kept[end - 1].rstrip().endswith(":"):
        return
    start = end - 1
    # An attribution wrapped over lines: keep going while the lines look like one.
    while start and kept[start - 1].strip() and _ATTRIBUTION_HINT.search(kept[start - 1]) and end - start < 3:
        start -= 1
    if _ATTRIBUTION_HINT.search(" ".join(kept[start:end])):
        del kept[start:]


def _cut_header_block(text: str) -> str:
    """Cut at "-----Original Message-----" or a block of header lines starting with From:."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if index == 0:
            continue
        if _ORIGINAL_MESSAGE.match(line) and "--" in line.strip()[:3] and re.search(r"[^\W\d_]", line):
            return "\n".join(lines[:index])
        if _FROM_LABEL.match(line):
            following = [ln for ln in lines[index + 1 : index + 6] if ln.strip()]
            if sum(1 for ln in following[:4] if _LABEL.match(ln)) >= 2:
                return "\n".join(lines[:index])
    return text
