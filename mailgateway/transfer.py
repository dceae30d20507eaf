"""Content-Transfer-Encoding decoding that forgives what real mail gets wrong.

``base64 `` with a trailing space, base64 with bad padding or junk between lines,
``x-uuencode``: the standard library gives up on some of these and returns the encoded
text as if it were the content.
"""

from __future__ import annotations

import binascii
import quopri
import re

from helpdesk.mailgateway.uuencode import decode_uu_lines

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_UU = {"x-uuencode", "uuencode", "x-uue", "uue"}


def decode_transfer(payload: bytes, encoding: str) -> bytes:
    """The content bytes of a part's payload, whatever its transfer encoding claims."""
    encoding = encoding.strip().strip("\"'").lower()
    if encoding == "base64":
        return _base64(payload)
    if encoding == "quoted-printable":
        return quopri.decodestring(payload)
    if encoding in _UU:
        return _uuencoded(payload)
    return payload


def _base64(payload: bytes) -> bytes:
    try:
        return binascii.a2b_base64(payload)
    except binascii.Error:
        # Bad padding or a truncated last group: keep every whole byte there is.
        cleaned = _NOT_BASE64.sub(b"", payload)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
        return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))


def _uuencoded(payload: bytes) -> bytes:
    lines = payload.decode("ascii", "replace").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("begin ")), -1)
    body = lines[start + 1 :] if start >= 0 else lines
    end = next((i for i, line in enumerate(body) if line.strip() == "end"), len(body))
    decoded = decode_uu_lines(body[:end])
    return payload if decoded is None else decoded
