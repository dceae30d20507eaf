"""The new part of a reply: quoted history and signature stripped (mail-parser-reply)."""

from __future__ import annotations

from mailparser_reply import EmailReplyParser

# Languages whose reply headers ("On ... wrote:", "Am ... schrieb:") are recognised.
_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh"]
MAX_REPLY_INPUT = 200_000  # characters; the regexes are not linear on hostile text


def strip_quotes(text: str) -> str:
    """The latest reply in ``text``; the full text when nothing can be told apart."""
    if not text.strip():
        return ""
    try:
        reply = EmailReplyParser(languages=_LANGUAGES).parse_reply(text[:MAX_REPLY_INPUT])
    except Exception:  # noqa: BLE001 - the full text is always a safe answer
        reply = None
    reply = (reply or "").strip()
    return reply or text.strip()
