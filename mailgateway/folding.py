"""Header blocks whose folding broke on the way: a continuation line without its leading space.

Long spam-filter reports and some gateways wrap header lines without the space or tab that
marks a continuation. The standard parser then takes that line as the start of the body, and
every header after it (often Subject, To, Content-Type) is lost into the body text. A line
inside the header block that is no field, followed later by a real field before the blank
line, can only be such a continuation: it is joined to the field above it.
"""

from __future__ import annotations

import re

MAX_HEADER_BYTES = 4 * 1024 * 1024  # a header block longer than that is left as it is
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")  # what the stdlib parser takes as a field
_NAMED_FIELD = re.compile(rb"[A-Za-z][A-Za-z0-9-]*[ \t]*:")  # and a field worth rescuing
_BLANK_LINE = re.compile(rb"\n\r?\n")


def repair_folding(raw: bytes) -> tuple[bytes, bool]:
    """The mail with broken continuation lines re-indented, and whether any was."""
    blank = _BLANK_LINE.search(raw, 0, MAX_HEADER_BYTES)
    if blank is None:
        return raw, False
    lines = raw[: blank.start()].split(b"\n")
    start = 1 if lines[0].startswith(b"From ") else 0
    if start >= len(lines) or not _FIELD.match(lines[start]):
        return raw, False
    broken = []
    field_after = False
    for index in range(len(lines) - 1, start, -1):  # backwards: is there a real field further down?
        line = lines[index]
        if line[:1] in (b" ", b"\t"):
            continue
        if _NAMED_FIELD.match(line):
            field_after = True
        elif field_after and not _FIELD.match(line):
            broken.append(index)
    if not broken:
        return raw, False
    for index in broken:
        lines[index] = b" " + lines[index]
    return b"\n".join(lines) + raw[blank.start() :], True
