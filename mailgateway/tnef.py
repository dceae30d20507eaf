"""Outlook's winmail.dat (application/ms-tnef): the files and the body inside, read with tnefparse.

Outlook sends a mail this way when it keeps its own formatting; other mail programs show one
useless winmail.dat. What is inside is what the sender attached.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass, field

from tnefparse.tnef import TNEF

from helpdesk.mailgateway.charset import codec_for, decode_bytes

TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian

# tnefparse logs a warning per odd attribute; a mail's oddities are ours to report (repairs).
logging.getLogger("tnefparse").setLevel(logging.ERROR)


class UnreadableTnef(Exception):
    """Not a TNEF stream, or one tnefparse cannot read."""


@dataclass
class TnefContent:
    text: str = ""
    html: str = ""
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # name, content type, bytes


def is_tnef(ctype: str, filename: str, data: bytes) -> bool:
    """A winmail.dat by its type, or by its name and signature (often sent as octet-stream)."""
    return ctype in TNEF_TYPES or (filename.lower() == "winmail.dat" and data.startswith(_SIGNATURE))


def unpack(data: bytes) -> TnefContent:
    """The body and the attachments of a TNEF stream. Raises ``UnreadableTnef``."""
    if not data.startswith(_SIGNATURE):
        raise UnreadableTnef("no TNEF signature")
    try:
        parsed = TNEF(data, do_checksum=False)
        codec = codec_for(parsed.codepage) or "cp1252"
        content = TnefContent(text=_text(parsed.body, codec), html=_text(parsed.htmlbody, codec))
        for number, attachment in enumerate(parsed.attachments, 1):
            name = _name(attachment, codec) or f"attachment-{number}.bin"
            ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
            content.files.append((name, ctype, bytes(attachment.data or b"")))
    except UnreadableTnef:
        raise
    except Exception as exc:  # any failure inside a hostile stream means "unreadable"
        raise UnreadableTnef(f"{type(exc).__name__}: {exc}"[:200]) from exc
    return content


def _text(value: object, codec: str) -> str:
    if isinstance(value, bytes):
        value = decode_bytes(value.rstrip(b"\x00"), codec).text
    return str(value or "").replace("\r\n", "\n").strip("\x00").strip()


def _name(attachment: object, codec: str) -> str:
    try:
        name = attachment.long_filename()  # type: ignore[attr-defined]  # tnefparse is untyped; its attachments have it
    except Exception:  # noqa: BLE001 - tnefparse decodes 8-bit names as UTF-8; read them with the codepage
        name = None
    if not name:
        raw = getattr(attachment, "_name", b"")
        name = decode_bytes(raw, codec).text if isinstance(raw, bytes) else str(raw or "")
    return str(name).strip("\x00").strip()
