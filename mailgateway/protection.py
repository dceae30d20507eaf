"""Signed and encrypted mail (S/MIME, PGP/MIME): what can be shown without keys.

A signature is kept as an attachment and never verified here ("signed, not verified"). An
opaque-signed S/MIME mail (application/pkcs7-mime; smime-type=signed-data) carries its
content inside the signature: it is read out of the CMS structure, which needs only a
small BER walk, no key. Encrypted content cannot be read: it is kept as it came.
"""

from __future__ import annotations

from collections.abc import Iterator

from helpdesk.core.mail import Protection

PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
SIGNATURES = ("application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature")
_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # OID 1.2.840.113549.1.7.2, with its tag and length
_OCTETS, _OCTETS_CONSTRUCTED = 0x04, 0x24
_PGP_MESSAGE = "-----BEGIN PGP MESSAGE-----"
_PGP_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"


def stronger(current: Protection | None, found: Protection) -> Protection:
    """Encrypted wins over signed: a signed-then-encrypted mail cannot be read."""
    return Protection.ENCRYPTED if Protection.ENCRYPTED in (current, found) else found


def inline_pgp(text: str) -> Protection | None:
    """PGP armour written into the text itself (no PGP/MIME)."""
    head = text.lstrip()[:200]
    if head.startswith(_PGP_MESSAGE):
        return Protection.ENCRYPTED
    if head.startswith(_PGP_SIGNED):
        return Protection.SIGNED
    return None


def signed_content(data: bytes) -> bytes | None:
    """The content inside a CMS SignedData (opaque signing), or None (encrypted, detached, not CMS)."""
    try:
        _, start, end, _ = _element(data, 0)  # ContentInfo
        content_type, explicit = list(_children(data, start, end))[:2]
        if data[content_type[1] - 2 : content_type[2]] != _SIGNED_DATA:
            return None
        signed = next(_children(data, explicit[1], explicit[2]))  # SignedData
        encapsulated = list(_children(data, signed[1], signed[2]))[2]  # version, digests, encapContentInfo
        inner = list(_children(data, encapsulated[1], encapsulated[2]))
        if len(inner) < 2:
            return None  # detached: the content is elsewhere
        octets = next(_children(data, inner[1][1], inner[1][2]))
        return _octets(data, *octets)
    except (IndexError, ValueError, StopIteration, RecursionError):
        return None


def _element(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(tag, content start, content end, next position) of the BER element at ``pos``."""
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    if first == 0x80:  # indefinite length: children up to an end-of-contents 00 00
        start = pos
        while data[pos : pos + 2] != b"\x00\x00":
            pos = _element(data, pos)[3]
            if pos >= len(data):
                raise ValueError("no end of contents")
        return tag, start, pos, pos + 2
    length = first
    if first > 0x80:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length, pos + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, child_start, child_end, pos = _element(data, pos)
        yield tag, child_start, child_end


def _octets(data: bytes, tag: int, start: int, end: int) -> bytes:
    if tag == _OCTETS:
        return data[start:end]
    if tag == _OCTETS_CONSTRUCTED:  # BER: the string in pieces
        return b"".join(_octets(data, *child) for child in _children(data, start, end))
    raise ValueError("not an octet string")
