"""What identifies a stored mail before it is parsed: its Message-ID, and a fingerprint of its content.

A Message-ID alone is no proof that two mails are the same: devices and monitoring tools reuse
one for every mail, and anyone can copy someone else's. Two arrivals are the same mail when their
bytes are equal or their fingerprints are (sender, date, subject and body, without the trace
headers that differ between two mailboxes it was delivered to).
"""

from __future__ import annotations

import hashlib
import re
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

# The header block is read from this much of the mail at most (a longer one is hostile).
_HEAD_MAX = 65536
_FINGERPRINTED = ("from", "date", "subject")

# The Message-ID columns' width (RFC 5322's line limit): a longer one, or one with control
# characters (PostgreSQL refuses NUL), could never be stored and would stall the mailbox.
_MID_MAX = 998
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def usable_message_id(value: str | None) -> str | None:
    """``value`` if it can be stored and matched; None (de-duplicated by content instead) if not."""
    if not value or len(value) > _MID_MAX or _CONTROL.search(value):
        return None
    return value


def _headers(raw: bytes) -> dict[str, str]:
    """The first value of each header in the header block only, unfolded, as text."""
    found: dict[str, str] = {}
    # The stdlib parser stops at the end of the header block (CRLF or LF), never reading the body.
    for name, value in BytesHeaderParser(policy=compat32).parsebytes(raw[:_HEAD_MAX]).raw_items():
        text = value.encode("ascii", "surrogateescape").decode("ascii", "replace")
        found.setdefault(name.lower(), " ".join(text.split()))
    return found


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block, read without parsing the mail (for early de-duplication)."""
    value = _headers(raw).get("message-id", "")
    inner = re.search(r"<([^<>\s]+)>", value)
    return usable_message_id(inner.group(1) if inner else value.split()[0] if value.split() else None)


def list_id(value: str | None) -> str | None:
    """The list identifier of a ``List-Id`` value (RFC 2919: the part in angle brackets), lower-cased."""
    if not value:
        return None
    inner = re.search(r"<([^<>\s]+)>", value)
    found = inner.group(1) if inner else value.strip()
    return found.lower() or None


def list_marks(raw: bytes) -> tuple[str | None, set[str]]:
    """The ``List-Id`` and the To/Cc addresses (lower-cased) of a stored mail, from its header block only."""
    headers = _headers(raw)
    recipients = getaddresses([headers.get("to", ""), headers.get("cc", "")])
    return list_id(headers.get("list-id")), {address.lower() for _, address in recipients if "@" in address}


def fingerprint(raw: bytes) -> str:
    """A hash of what makes this mail this mail: sender, date, subject and body.

    Trace headers (Received, Delivered-To, Return-Path) are left out: they differ between the
    copies of one mail delivered to two mailboxes. Line ends and trailing blanks are normalised.
    """
    headers = _headers(raw)
    # CRLF (IMAP, SMTP), LF (files) or CR (old Macs): one mail whatever its line ends.
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = text.find(b"\n\n")
    body = text[end + 2 :] if end >= 0 else b""
    digest = hashlib.sha256()
    for name in _FINGERPRINTED:
        digest.update(headers.get(name, "").encode() + b"\x00")
    for line in body.splitlines():
        digest.update(line.rstrip() + b"\n")
    return digest.hexdigest()
