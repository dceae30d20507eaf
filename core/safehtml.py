"""Mail HTML made safe to show, once, within a budget; the console shows what is stored.

Sanitising is nh3's job (ammonia underneath): no scripts, no event handlers, no style elements or
attributes, only URL schemes that run nothing, links with rel="noopener noreferrer nofollow". Its parser
takes time quadratic in the nesting depth (200,000 nested <div> took 88 s), and a call cannot be
interrupted; so markup whose nesting would cost more than the budget is not sanitised at all: the
message is shown as its text, with a note saying why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import nh3

from helpdesk.core.models import Message

# The policy's version, stored with each sanitised body: a body cleaned under an older policy (or
# none, before this was stored) is cleaned again, once, when it is first shown.
POLICY = 1

MAX_HTML_CHARS = 8 * 1024 * 1024
# Sum over the opening tags of the elements open around each: about the parser's work. 200,000
# nested elements make 2e10; ordinary mail, even a long newsletter of tables, stays under 1e6.
MAX_NESTING_WORK = 20_000_000

# ``cid:`` stays so that inline images can be pointed at stored attachments.
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
# nh3's defaults plus text direction and language, which mail clients set and readers need.
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("*", set()).update({"dir", "lang"})
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")
# A start tag closes an open element of these kinds left unclosed before it (HTML's implied end tags).
_BLOCK_CLOSES_P = ("p",)
_CLOSED_BY: dict[str, tuple[str, ...]] = {
    "td": ("td", "th"), "th": ("td", "th"), "tr": ("td", "th", "tr"), "li": ("li",), "dt": ("dt", "dd"),
    "dd": ("dt", "dd"), "option": ("option",),
    **{block: _BLOCK_CLOSES_P for block in ("p", "div", "table", "ul", "ol", "dl", "blockquote", "pre", "h1", "h2",
                                             "h3", "h4", "h5", "h6")},
}
_END_TAG_REACH = 64


@dataclass(frozen=True)
class SafeHtml:
    html: str | None  # safe to show; None: show the text instead
    note: str | None = None  # why the HTML is not shown


def nesting_work(html: str) -> int:
    """An estimate of the parser's work from nesting, in one linear scan.

    Elements the parser closes by themselves (``<p>``, ``<li>``, ``<td>``, ``<tr>`` without end tags,
    as old-style mail writes them) are closed here too; any other unclosed element counts as open.
    """
    stack: list[str] = []
    work = 0
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.groups()
        name = name.lower()
        if closing:
            # Up to the matching element, if it is near the top (a far one would cost a long search).
            for at in range(len(stack) - 1, max(-1, len(stack) - 1 - _END_TAG_REACH), -1):
                if stack[at] == name:
                    del stack[at:]
                    break
        elif not self_closing and name not in _VOID:
            while stack and stack[-1] in _CLOSED_BY.get(name, ()):
                stack.pop()
            work += len(stack)
            stack.append(name)
    return work


def sanitise(html: str) -> SafeHtml:
    """HTML safe to show in the console, or None with a note when it is over the budget."""
    if len(html) > MAX_HTML_CHARS:
        return SafeHtml(None, f"HTML part over {MAX_HTML_CHARS // (1024 * 1024)} MB: shown as text")
    if nesting_work(html) > MAX_NESTING_WORK:
        return SafeHtml(None, "HTML part nested too deeply to show safely: shown as text")
    clean = nh3.clean(
        html,
        url_schemes=_URL_SCHEMES,
        attributes=_ATTRIBUTES,
        clean_content_tags={"script", "style"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )
    return SafeHtml(clean or None)


def store(message: Message, html: str | None, note: str | None = None) -> None:
    """Put a mail's sanitised HTML (and the note of one over the budget) on its message."""
    message.html, message.html_note, message.html_policy = html, note, POLICY


def settle(messages: Iterable[Message]) -> bool:
    """Sanitise, once, the HTML of messages stored before this policy; True if any changed (to be committed)."""
    changed = False
    for message in messages:
        if message.html and message.html_policy != POLICY:
            safe = sanitise(message.html)
            store(message, safe.html, safe.note)
            changed = True
    return changed
