"""HTML from mail rendered to plain text for reading (sanitising for display is core.safehtml's)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Content that is never display text.
_DROP_CONTENT = {"script", "style", "head", "title", "template", "noscript", "iframe", "object"}
_BLOCKS = {
    "p", "div", "table", "tr", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "section", "article", "header", "footer", "hr", "dl", "dt", "dd",
    "address", "center", "form", "fieldset", "body", "html",
}


class _TextRenderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._drop_depth = 0
        self._pre_depth = 0
        self._quote_depth = 0

    def _newline(self) -> None:
        # Quoted history is shown the way plain-text mail quotes it, so that the reply
        # extraction treats both alike.
        self.chunks.append("\n" + "> " * self._quote_depth)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self._drop_depth += 1
        elif tag == "br":
            self._newline()
        elif tag == "li":
            self._newline()
            self.chunks.append("- ")
        elif tag in ("td", "th"):
            self.chunks.append(" ")
        elif tag in _BLOCKS:
            if tag == "blockquote":
                self._quote_depth += 1
            self._newline()
            if tag == "pre":
                self._pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT:
            self._drop_depth = max(0, self._drop_depth - 1)
        elif tag in _BLOCKS:
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)
            if tag == "blockquote":
                self._quote_depth = max(0, self._quote_depth - 1)
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._drop_depth:
            return
        if self._pre_depth:
            self.chunks.append(data.replace("\n", "\n" + "> " * self._quote_depth))
        else:
            self.chunks.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text rendition of an HTML body."""
    renderer = _TextRenderer()
    try:
        renderer.feed(html)
        renderer.close()
    except (AssertionError, ValueError):  # HTMLParser on very broken markup
        pass
    text = "".join(renderer.chunks).replace("\xa0", " ")
    lines = [line.strip() for line in text.split("\n")]
    # A quoted line with nothing in it is a blank line.
    text = "\n".join("" if not line.replace(">", "").strip() else line for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
