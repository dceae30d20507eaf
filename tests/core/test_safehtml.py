"""The sanitising budget: hostile nesting is refused before the parser sees it, ordinary mail HTML is not."""

from __future__ import annotations

import pytest

from helpdesk.core.safehtml import sanitise

HOSTILE = {
    "nested div": "<div>" * 200_000 + "x" + "</div>" * 200_000,
    "unclosed inline": "<b>" * 100_000 + "x",
    "nested tables": "<table><tr><td>" * 5_000 + "x",
}
# Old-style mail leaves these elements unclosed; the parser closes them itself, so they nest nothing.
ORDINARY = {
    "table without end tags": "<table>" + "<tr><td>cell<td>cell" * 20_000 + "</table>",
    "paragraphs and lists without end tags": "<p>text<ul><li>one<li>two</ul>" * 20_000,
    "a long newsletter": '<table><tr><td><p>News <b>item</b> <a href="https://example.org/">more</a></p></td></tr></table>'
    * 20_000,
}


@pytest.mark.parametrize("html", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_nesting_is_shown_as_text_with_a_note(html: str) -> None:
    safe = sanitise(html)
    assert safe.html is None and safe.note and "nested too deeply" in safe.note


@pytest.mark.parametrize("html", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_html_without_end_tags_is_sanitised(html: str) -> None:
    safe = sanitise(html)
    assert safe.note is None and safe.html is not None and len(safe.html) > 100_000


def test_html_over_the_size_budget_is_shown_as_text() -> None:
    safe = sanitise("<p>x</p>" * (1024 * 1024 + 1))
    assert safe.html is None and safe.note and "MB" in safe.note
