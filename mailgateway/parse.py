"""Raw mail bytes -> ``core.mail.ParsedMail``, for every mail the world sends.

The structure comes from the standard library's parser with the ``compat32`` policy: it
never decodes on access, so lying charsets and 8-bit headers cannot raise while we walk.
mail-parser reads the fields it is good at (addresses, dates). Every text is decoded by
us with explicit fallbacks, and the walk is iterative and bounded so hostile mail (deep
nesting, MIME bombs, huge headers) costs bounded time.
"""

from __future__ import annotations

import email.parser
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import compat32
from typing import Any

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from core.mail import Address, ParsedMail, Part
from mailgateway.charset import decode_bytes, decode_header_value, decode_words, header_text
from mailgateway.html import html_to_text, sanitize_html
from mailgateway.quotes import strip_quotes

MAX_PARTS = 2000  # parts walked; beyond this a MIME bomb is cut off (and said so)
MAX_DEPTH = 120  # multipart nesting walked
MAX_ADDRESS_HEADER = 64 * 1024  # characters of an address header given to the address parser
MAX_TEXT_CHARS = 5 * 1024 * 1024  # of body text kept (the raw mail keeps the rest)

_MSGID = re.compile(r"<([^<>\s]+)>")
_ADDRESS_HEADERS = {"from": "from_", "to": "to", "cc": "cc", "reply-to": "reply_to"}


class UnreadableMail(Exception):
    """Nothing sensible could be read out of the bytes; the message is the short reason."""


@dataclass
class _Walk:
    """What the walk over the MIME tree collects."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Part] = field(default_factory=list)
    attachment_bytes: int = 0
    delivery_status: list[str] = field(default_factory=list)
    feedback_report: list[str] = field(default_factory=list)
    attached_headers: list[dict[str, list[str]]] = field(default_factory=list)
    embedded_ids: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    inner_text: list[str] = field(default_factory=list)  # text of forwarded messages


def normalise_line_endings(raw: bytes) -> bytes:
    """CR-only and mixed line endings become LF (CRLF-only mail parses fine as it is)."""
    bare_cr = raw.count(b"\r") - raw.count(b"\r\n")
    if bare_cr <= 0:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def parse_message(raw: bytes, *, max_attachment_bytes: int = 25 * 1024 * 1024) -> ParsedMail:
    """Read one mail. Raises ``UnreadableMail`` only when nothing sensible can be read."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise UnreadableMail("not bytes")
    raw = bytes(raw)
    if not raw.strip():
        raise UnreadableMail("empty message")
    try:
        return _parse(raw, max_attachment_bytes)
    except UnreadableMail:
        raise
    except RecursionError:
        raise UnreadableMail("message nested too deeply") from None
    except MemoryError:
        raise UnreadableMail("message too large to read") from None
    except Exception as exc:  # noqa: BLE001 - any parser bug on hostile input is "unreadable"
        raise UnreadableMail(f"parser failed: {type(exc).__name__}: {exc}"[:200]) from exc


def _parse(raw: bytes, max_attachment_bytes: int) -> ParsedMail:
    message = email.parser.BytesParser(policy=compat32).parsebytes(normalise_line_endings(raw))
    if not message.keys() and not message.get_payload():
        raise UnreadableMail("no headers and no body")
    fallback_charset = message.get_content_charset()
    headers = read_headers(message, fallback_charset)

    walk = _Walk()
    _walk_tree(message, walk, max_attachment_bytes)

    text = "\n\n".join(t for t in walk.plain if t.strip())
    html_source = "\n".join(walk.html)
    if not text and html_source:
        text = html_to_text(html_source)
    if not text and walk.inner_text:
        text = walk.inner_text[0]
    text = text[:MAX_TEXT_CHARS]

    parsed = ParsedMail(from_=None)
    raw_headers = _raw_address_headers(message, fallback_charset)
    for name, attr in _ADDRESS_HEADERS.items():
        addresses = _addresses(raw_headers.get(name, []))
        if attr == "from_":
            parsed.from_ = addresses[0] if addresses else None
        else:
            setattr(parsed, attr, addresses)
    parsed.subject = _first(headers, "subject")
    parsed.date = _date(_first(headers, "date"))
    parsed.message_id = _first_id(_first(headers, "message-id"))
    parsed.in_reply_to = _first_id(_first(headers, "in-reply-to"))
    parsed.references = message_ids(" ".join(headers.get("references", [])))
    parsed.text = text
    parsed.reply_text = strip_quotes(text)
    parsed.html = sanitize_html(html_source) if html_source else None
    parsed.attachments = walk.attachments
    parsed.headers = headers
    parsed.content_type = message.get_content_type()
    report_type = message.get_param("report-type") if parsed.content_type == "multipart/report" else None
    parsed.report_type = header_text(report_type).strip().lower() or None if report_type else None
    parsed.delivery_status = "\n\n".join(walk.delivery_status) or None
    parsed.feedback_report = "\n\n".join(walk.feedback_report) or None
    parsed.attached_headers = walk.attached_headers
    parsed.embedded_message_ids = list(dict.fromkeys(walk.embedded_ids))
    parsed.defects = list(dict.fromkeys(_message_defects(message) + walk.defects))
    return parsed


def read_headers(message: Message, fallback_charset: str | None = None) -> dict[str, list[str]]:
    """Lower-cased header names -> decoded values, in order."""
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = header_text(name).strip().lower()
        headers.setdefault(key, []).append(decode_header_value(value, fallback_charset))
    return headers


def message_ids(value: str) -> list[str]:
    """Message-IDs in a header value, without angle brackets, in order, de-duplicated."""
    found = _MSGID.findall(value)
    if not found:
        found = [token.strip("<>") for token in value.split() if "@" in token]
    return list(dict.fromkeys(found))


def _first(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0].strip() if values else ""


def _first_id(value: str) -> str | None:
    ids = message_ids(value)
    return ids[0] if ids else None


def _raw_address_headers(message: Message, fallback_charset: str | None) -> dict[str, list[str]]:
    """Address headers with 8-bit text decoded but encoded words kept: a word may hold a comma."""
    found: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = header_text(name).strip().lower()
        if key in _ADDRESS_HEADERS:
            found.setdefault(key, []).append(header_text(value, fallback_charset))
    return found


def _addresses(values: list[str]) -> list[Address]:
    result: list[Address] = []
    for value in values:
        value = value[:MAX_ADDRESS_HEADER]
        try:
            pairs = get_addresses(value, decode_names=True)
        except Exception:  # noqa: BLE001 - fall back to the stdlib's lenient reading
            pairs = email.utils.getaddresses([value])
        for name, addr in pairs:
            if not addr and not name:
                continue
            result.append(Address(address=addr.strip().lower(), name=decode_words(name).strip()))
    return result


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is not None:
            return parsed
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    try:
        return parse_mail_date(value).value
    except Exception:  # noqa: BLE001 - an unreadable date is no date
        return None


def _message_defects(message: Message) -> list[str]:
    return [type(defect).__name__ for defect in getattr(message, "defects", [])]


def _walk_tree(root: Message, walk: _Walk, max_attachment_bytes: int) -> None:
    """Iterative, bounded pre-order walk of the MIME tree."""
    stack: list[tuple[Message, int, bool]] = [(root, 0, False)]
    seen = 0
    while stack:
        part, depth, in_attachment = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            walk.defects.append(f"more than {MAX_PARTS} MIME parts: the rest was not read")
            return
        walk.defects.extend(d for d in _message_defects(part) if part is not root)
        ctype = part.get_content_type()
        payload = part.get_payload()
        if ctype == "message/rfc822" or (part.get_content_maintype() == "message" and isinstance(payload, list) and ctype != "message/delivery-status"):
            _read_attached_message(part, walk, max_attachment_bytes)
            continue
        if isinstance(payload, list):
            if depth >= MAX_DEPTH:
                walk.defects.append(f"MIME nesting deeper than {MAX_DEPTH}: the rest was not read")
                continue
            if ctype == "message/delivery-status":
                walk.delivery_status.append(_blocks_text(payload))
                continue
            attached = in_attachment or part.get_content_disposition() == "attachment"
            children = [(child, depth + 1, attached) for child in payload if isinstance(child, Message)]
            stack.extend(reversed(children))
            continue
        _read_leaf(part, ctype, walk, max_attachment_bytes, in_attachment)


def _read_leaf(part: Message, ctype: str, walk: _Walk, limit: int, in_attachment: bool) -> None:
    disposition = part.get_content_disposition()
    filename = _filename(part)
    if ctype == "message/feedback-report":
        walk.feedback_report.append(_leaf_text(part, walk))
        return
    if ctype == "message/delivery-status":
        walk.delivery_status.append(_leaf_text(part, walk))
        return
    if ctype == "text/rfc822-headers":
        headers_text = _leaf_text(part, walk)
        inner = email.parser.Parser(policy=compat32).parsestr(headers_text, headersonly=True)
        _record_attached_headers(inner, walk)
        return
    is_body = (
        ctype in ("text/plain", "text/html")
        and disposition != "attachment"
        and not in_attachment
        and not (filename and disposition != "inline")
    )
    if is_body:
        text = _leaf_text(part, walk)
        (walk.plain if ctype == "text/plain" else walk.html).append(text)
        return
    data = _leaf_bytes(part)
    if not data and not filename and ctype.startswith("text/"):
        return
    _add_attachment(walk, limit, filename or _default_name(part, ctype), ctype, data, part)


def _read_attached_message(part: Message, walk: _Walk, limit: int) -> None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(inner, Message):
        return
    _record_attached_headers(inner, walk)
    try:
        data = inner.as_bytes()
    except Exception:  # noqa: BLE001 - regenerating odd mail can fail; keep what we can
        data = b""
        walk.defects.append("attached message could not be re-serialised")
    subject = decode_header_value(inner.get("subject", "") or "")
    name = _filename(part) or (_safe_name(subject) or "message") + ".eml"
    _add_attachment(walk, limit, name, "message/rfc822", data, part)
    inner_walk = _Walk()
    _walk_tree(inner, inner_walk, 0)
    text = "\n\n".join(t for t in inner_walk.plain if t.strip())
    if not text and inner_walk.html:
        text = html_to_text("\n".join(inner_walk.html))
    if text:
        walk.inner_text.append(text)


def _record_attached_headers(inner: Message, walk: _Walk) -> None:
    headers = read_headers(inner)
    if not headers:
        return
    walk.attached_headers.append(headers)
    for value in headers.get("message-id", []):
        walk.embedded_ids.extend(message_ids(value))


def _add_attachment(walk: _Walk, limit: int, filename: str, ctype: str, data: bytes, part: Message) -> None:
    content_id = part.get("content-id")
    cid = message_ids(header_text(content_id))[:1] if content_id else []
    cid_value = cid[0] if cid else (header_text(content_id).strip().strip("<>") or None if content_id else None)
    inline = part.get_content_disposition() == "inline" or (cid_value is not None and part.get_content_disposition() is None)
    if limit and walk.attachment_bytes + len(data) > limit:
        walk.defects.append(
            f"attachment {filename!r} ({len(data)} bytes) dropped: over the {limit} byte limit per mail"
        )
        data = b""
    walk.attachment_bytes += len(data)
    walk.attachments.append(Part(filename=filename, content_type=ctype, data=data, content_id=cid_value, inline=inline))


def _filename(part: Message) -> str:
    try:
        name: Any = part.get_filename()
    except Exception:  # noqa: BLE001 - broken RFC 2231 parameters
        name = None
    if not name:
        return ""
    return _safe_name(decode_header_value(header_text(name)))


def _safe_name(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().strip(".")
    return name[:200]


def _default_name(part: Message, ctype: str) -> str:
    import mimetypes

    extension = mimetypes.guess_extension(ctype) or ".bin"
    return f"part{extension}"


def _leaf_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encoding: keep the raw text
        data = None
    if data is None:
        raw = part.get_payload()
        data = raw.encode("ascii", "surrogateescape") if isinstance(raw, str) else b""
    return data


def _leaf_text(part: Message, walk: _Walk) -> str:
    data = _leaf_bytes(part)
    text, defect = decode_bytes(data, part.get_content_charset())
    if defect:
        walk.defects.append(defect)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _blocks_text(blocks: list[Any]) -> str:
    """The text of a message/delivery-status part (which compat32 splits into header blocks)."""
    out = []
    for block in blocks:
        if isinstance(block, Message):
            lines = [f"{header_text(k)}: {decode_header_value(v)}" for k, v in block.raw_items()]
            out.append("\n".join(lines))
    return "\n\n".join(out)


def parsed_to_json(parsed: ParsedMail, verdicts: dict[str, bool]) -> dict[str, Any]:
    """The ``helpdesk parse --json`` object. Other tools read it: keep the names stable."""

    def address(a: Address) -> dict[str, str]:
        return {"address": a.address, "name": a.name}

    return {
        "from": address(parsed.from_) if parsed.from_ else None,
        "to": [address(a) for a in parsed.to],
        "cc": [address(a) for a in parsed.cc],
        "reply_to": [address(a) for a in parsed.reply_to],
        "subject": parsed.subject,
        "date": parsed.date.isoformat() if parsed.date else None,
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": list(parsed.references),
        "text": parsed.text,
        "reply_text": parsed.reply_text,
        "attachments": [
            {
                "filename": part.filename,
                "content_type": part.content_type,
                "size": len(part.data),
                "sha256": hashlib.sha256(part.data).hexdigest(),
            }
            for part in parsed.attachments
        ],
        "verdicts": dict(verdicts),
    }
