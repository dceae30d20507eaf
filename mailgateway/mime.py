"""The MIME tree of one mail, walked once: body texts, attachments, report parts.

The walk is iterative with a part budget and a depth limit, so a MIME bomb or a mail
nested a thousand deep costs bounded time and never exhausts the stack. Attachments past
the per-mail size limit are not even decoded: they stay as empty ``Part``s with a defect.
"""

from __future__ import annotations

import contextlib
import email.parser
import enum
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import Message
from email.policy import Compat32
from io import BytesIO

from helpdesk.core.mail import CalendarEvent, Part, Protection
from helpdesk.mailgateway import invitation, names, protection, tnef
from helpdesk.mailgateway.charset import MailCharsets, decode_bytes, decode_header_value, header_text
from helpdesk.mailgateway.transfer import decode_transfer
from helpdesk.mailgateway.uuencode import extract_uuencoded

MAX_PARTS = 2000  # parts walked; the rest of a MIME bomb is cut off (and said so)
MAX_DEPTH = 120  # nesting walked
MAX_TEXT_CHARS = 4 * 1024 * 1024  # of one body part (the raw mail keeps everything)
_MSGID = re.compile(r"<([^<>\s]+)>")
_ATTACHED_MESSAGES = ("message/rfc822", "message/global", "message/news")
_REPORT_LEAVES = ("message/feedback-report", "message/delivery-status", "text/rfc822-headers")
# Parts of a bounce kept as its attachments too (the ticket of the bounced mail shows why).
_BOUNCE_FILES = {"message/delivery-status": "delivery-status.txt", "text/rfc822-headers": "returned-headers.txt"}


class _ReadPolicy(Compat32):
    """compat32, plus two things real mail needs.

    A boundary folded inside its quotes (``boundary="simple<CRLF> boundary"``) is unfolded,
    or no part is ever found. Headers are written back exactly as they came (compat32 would
    refold them), so an attached message is kept as sent.
    """

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if name.strip().lower() == "content-type":
            value = _FOLDING.sub("", value)
        return name, value

    def fold_binary(self, name: str, value: str) -> bytes:
        text = f"{name}: {value}".rstrip("\r\n")
        return text.encode("ascii", "surrogateescape") + self.linesep.encode("ascii")


READ_POLICY = _ReadPolicy(linesep="\n")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")


class Context(enum.Enum):
    BODY = "body"  # the sender's own message
    ATTACHED = "attached"  # inside a container sent as an attachment
    FORWARD = "forward"  # inside an attached message/rfc822


@dataclass
class MimeContent:
    """What the walk over the MIME tree collects."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Part] = field(default_factory=list)
    attachment_bytes: int = 0
    delivery_status: list[str] = field(default_factory=list)
    feedback_report: list[str] = field(default_factory=list)
    attached_headers: list[dict[str, list[str]]] = field(default_factory=list)
    embedded_ids: list[str] = field(default_factory=list)
    forwarded_plain: list[str] = field(default_factory=list)
    forwarded_html: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    charsets: MailCharsets = field(default_factory=MailCharsets)  # hints for undeclared text; repairs made
    protection: Protection | None = None
    calendar: list[CalendarEvent] = field(default_factory=list)
    tnef_text: list[str] = field(default_factory=list)  # bodies inside winmail.dat: used when the mail has none
    tnef_html: list[str] = field(default_factory=list)
    # Parts (by id) kept as files whatever their type, with the name to give them when they have none.
    as_file: dict[int, str] = field(default_factory=dict)


def read_headers(message: Message, charsets: MailCharsets | str | None = None) -> dict[str, list[str]]:
    """Lower-cased header names -> decoded values, in order."""
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = header_text(name).strip().lower()
        headers.setdefault(key, []).append(decode_header_value(value, charsets))
    return headers


def declared_charsets(root: Message, limit: int = 200) -> list[str]:
    """The charset parameters of the first ``limit`` parts, in order (a bounded walk)."""
    found: list[str] = []
    stack = [root]
    while stack and limit > 0:
        part = stack.pop()
        limit -= 1
        try:
            charset = part.get_param("charset")
        except Exception:  # noqa: BLE001 - an odd parameter names nothing
            charset = None
        if isinstance(charset, str):
            found.append(charset)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return found


def walk_tree(root: Message, max_attachment_bytes: int, charsets: MailCharsets | None = None) -> MimeContent:
    """Iterative, bounded pre-order walk of the MIME tree under ``root``."""
    content = MimeContent(charsets=charsets or MailCharsets())
    stack: list[tuple[Message, int, Context]] = [(root, 0, Context.BODY)]
    seen = 0
    while stack:
        part, depth, context = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            content.defects.append(f"more than {MAX_PARTS} MIME parts: the rest was not read")
            break
        if part is not root:
            content.defects.extend(type(d).__name__ for d in part.defects)
        payload = part.get_payload()
        ctype = part.get_content_type()
        if not isinstance(payload, list):
            unwrapped = _read_leaf(part, ctype, content, max_attachment_bytes, context)
            if unwrapped is not None:
                stack.append((unwrapped, depth + 1, context))
            continue
        if part.get_content_maintype() == "message" and ctype not in _ATTACHED_MESSAGES:
            # Report parts (delivery-status, feedback-report, ...): compat32 made header blocks.
            if context is Context.BODY:
                _report_text(ctype, content).append(_blocks_text(payload))
                _keep_bounce_part(part, ctype, content, max_attachment_bytes)
            continue
        if depth >= MAX_DEPTH:
            content.defects.append(f"MIME nesting deeper than {MAX_DEPTH}: the rest was not read")
            continue
        children = [child for child in payload if isinstance(child, Message)]
        if context is Context.BODY:
            children = _protected(ctype, children, content)
            if ctype == "multipart/mixed":
                _html_files(children, content)
        if part.get_content_maintype() == "message":
            children = _transfer_decoded(part, children)
            inner_context = Context.FORWARD
            for inner in children:
                _record_attached_headers(inner, content)
            if context is not Context.FORWARD:
                _attach_message(part, children, content, max_attachment_bytes)
        elif context is Context.BODY and part.get_content_disposition() == "attachment":
            inner_context = Context.ATTACHED
        else:
            inner_context = context
        stack.extend((child, depth + 1, inner_context) for child in reversed(children))
    return content


def message_ids(value: str) -> list[str]:
    """Message-IDs in a header value, without angle brackets, in order, de-duplicated."""
    found = _MSGID.findall(value)
    if not found:
        found = [token.strip("<>") for token in value.split() if "@" in token]
    return list(dict.fromkeys(found))


def _read_leaf(
    part: Message, ctype: str, content: MimeContent, limit: int, context: Context
) -> Message | None:
    """Read one leaf into ``content``; an opaque-signed S/MIME leaf gives back the message inside."""
    if ctype in _REPORT_LEAVES:
        if context is Context.BODY:
            _read_report_leaf(part, ctype, content)
            _keep_bounce_part(part, ctype, content, limit)
        return None
    disposition = part.get_content_disposition()
    filename = names.filename(part, content.charsets)
    is_text = ctype in ("text/plain", "text/html") and disposition != "attachment" and id(part) not in content.as_file
    is_text = is_text and not (filename and disposition != "inline")
    if context is Context.FORWARD:
        if is_text:
            (content.forwarded_plain if ctype == "text/plain" else content.forwarded_html).append(
                _leaf_text(part, content)
            )
        return None  # the forwarded message is kept whole as one .eml attachment
    if is_text and context is Context.BODY:
        text = _leaf_text(part, content)
        if ctype == "text/plain":
            text, files = extract_uuencoded(text)
            for name, data in files:
                _add_attachment(content, limit, name, _guess_type(name), data, None)
            content.plain.append(text)
        else:
            content.html.append(text)
        return None
    size = _encoded_size(part)
    omitted = None
    if limit and content.attachment_bytes + size > limit:
        data, omitted = b"", size
        content.defects.append(
            f"attachment {filename or ctype!r} (about {size} bytes) not kept: over the {limit} byte limit per mail"
        )
    else:
        data = _leaf_bytes(part)
        if not data and not filename and ctype.startswith("text/"):
            return None
    if data and tnef.is_tnef(ctype, filename, data) and _unpack_tnef(data, content, limit):
        return None
    unwrapped = _pkcs7(part, ctype, filename, data, content) if context is Context.BODY else None
    if data and context is Context.BODY and invitation.is_calendar(ctype, filename):
        try:
            content.calendar.extend(invitation.read_events(data))
        except invitation.UnreadableCalendar:
            content.charsets.note("calendar-unreadable")
    name = filename or names.unique(
        content.as_file.get(id(part)) or names.fallback_name(part, ctype, content.charsets),
        {p.filename for p in content.attachments},
    )
    _add_attachment(content, limit, name, ctype, data, part, omitted)
    return unwrapped


def _unpack_tnef(data: bytes, content: MimeContent, limit: int) -> bool:
    """Outlook's winmail.dat: its files become the mail's attachments, its body the text
    when the mail has none. False (keep winmail.dat as it is) when it is unreadable or empty."""
    try:
        inside = tnef.unpack(data)
    except tnef.UnreadableTnef:
        content.charsets.note("tnef-unreadable")
        return False
    if not inside.files and not inside.text and not inside.html:
        return False
    for name, ctype, file_data in inside.files:
        _add_attachment(content, limit, names.safe_filename(name) or "attachment.bin", ctype, file_data, None)
    content.tnef_text.append(inside.text)
    content.tnef_html.append(inside.html)
    content.charsets.note("tnef-unpacked")
    return True


def _pkcs7(part: Message, ctype: str, filename: str, data: bytes, content: MimeContent) -> Message | None:
    """application/pkcs7-mime: opaque-signed content to read on, or encrypted content to keep."""
    if ctype not in protection.PKCS7_MIME and not filename.lower().endswith(".p7m"):
        return None
    kind = header_text(part.get_param("smime-type") or "").strip().lower() if ctype in protection.PKCS7_MIME else ""
    inner = protection.signed_content(data) if data and kind in ("signed-data", "") else None
    if inner is None:
        if kind not in ("certs-only", "compressed-data"):
            content.protection = protection.stronger(content.protection, Protection.ENCRYPTED)
            content.charsets.note("encrypted-not-read")
        return None
    content.protection = protection.stronger(content.protection, Protection.SIGNED)
    content.charsets.note("signature-not-verified")
    return email.parser.BytesParser(policy=READ_POLICY).parsebytes(inner)


def _protected(ctype: str, children: list[Message], content: MimeContent) -> list[Message]:
    """multipart/signed and multipart/encrypted (RFC 1847) in the sender's own message."""
    if ctype == "multipart/signed":
        content.protection = protection.stronger(content.protection, Protection.SIGNED)
        content.charsets.note("signature-not-verified")
        for child in children[1:]:
            if child.get_content_type() in protection.SIGNATURES:
                content.as_file[id(child)] = names.fallback_name(None, child.get_content_type(), MailCharsets())
    elif ctype == "multipart/encrypted":
        content.protection = protection.stronger(content.protection, Protection.ENCRYPTED)
        content.charsets.note("encrypted-not-read")
        # Both kept as files: the control part ("Version: 1") and the encrypted data.
        for child in children:
            control = child.get_content_type() == "application/pgp-encrypted"
            content.as_file[id(child)] = "pgp-version.txt" if control else "encrypted.asc"
    return children


def _html_files(children: list[Message], content: MimeContent) -> None:
    """An HTML part of a multipart/mixed after the body text is a file the sender attached
    (a saved page, a report), not a second body."""
    body_seen = False
    for child in children:
        child_type = child.get_content_type()
        if child_type == "text/html" and body_seen and child.get_content_disposition() != "attachment":
            content.as_file[id(child)] = ""
        elif child.get_content_disposition() != "attachment" and (
            child_type == "multipart/alternative" or (child_type == "text/plain" and str(_raw_payload(child)).strip())
        ):
            body_seen = True  # an empty text part (a stray boundary) is no body


def _keep_bounce_part(part: Message, ctype: str, content: MimeContent, limit: int) -> None:
    """A bounce's delivery status and returned headers, kept as files as well as read."""
    name = _BOUNCE_FILES.get(ctype)
    if name is None:
        return
    try:
        flat = _flatten(part).replace(b"\r\n", b"\n")
    except Exception:  # noqa: BLE001 - the raw mail keeps it; the text was read already
        return
    body = flat.split(b"\n\n", 1)[1] if b"\n\n" in flat else b""
    if isinstance(part.get_payload(), str):
        body = _leaf_bytes(part)
    if body.strip():
        _add_attachment(content, limit, names.filename(part, content.charsets) or name, ctype, body, part)


def _report_text(ctype: str, content: MimeContent) -> list[str]:
    if ctype == "message/feedback-report":
        return content.feedback_report
    if ctype == "message/delivery-status":
        return content.delivery_status
    return []  # other reports (disposition-notification, ...): the raw mail keeps them


def _read_report_leaf(part: Message, ctype: str, content: MimeContent) -> None:
    text = _leaf_text(part, content)
    if ctype != "text/rfc822-headers":
        _report_text(ctype, content).append(text)
    else:
        inner = email.parser.Parser(policy=READ_POLICY).parsestr(text, headersonly=True)
        _record_attached_headers(inner, content)


def _attach_message(part: Message, children: list[Message], content: MimeContent, limit: int) -> None:
    """A forwarded or bounced message, kept whole as one .eml attachment."""
    if not children:
        return
    inner = children[0]
    try:
        data = _flatten(inner)
    except Exception:  # noqa: BLE001 - regenerating odd mail can fail; the raw mail keeps it
        data = b""
        content.defects.append("attached message could not be re-serialised")
    if limit and content.attachment_bytes + len(data) > limit:
        content.defects.append(
            f"attached message ({len(data)} bytes) not kept: over the {limit} byte limit per mail"
        )
        data = b""
    subject = decode_header_value(inner.get("subject", "") or "")
    name = names.filename(part, content.charsets) or (names.safe_filename(subject) or "message") + ".eml"
    _add_attachment(content, 0, name, part.get_content_type(), data, part)


def _flatten(message: Message) -> bytes:
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=READ_POLICY).flatten(message)
    return buffer.getvalue()


def _transfer_decoded(part: Message, children: list[Message]) -> list[Message]:
    """An attached message sent base64- or QP-encoded (not allowed, but sent) read as a message."""
    encoding = header_text(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding not in ("base64", "quoted-printable") or len(children) != 1:
        return children
    try:
        raw = decode_transfer(_flatten(children[0]).strip(), encoding)
        inner = email.parser.BytesParser(policy=READ_POLICY).parsebytes(raw)
    except Exception:  # noqa: BLE001 - keep what the parser made of it
        return children
    part.set_payload([inner])
    return [inner]


def _record_attached_headers(inner: Message, content: MimeContent) -> None:
    headers = read_headers(inner)
    if not headers:
        return
    content.attached_headers.append(headers)
    for value in headers.get("message-id", []):
        content.embedded_ids.extend(message_ids(value))


def _add_attachment(
    content: MimeContent, limit: int, filename: str, ctype: str, data: bytes, part: Message | None,
    omitted: int | None = None,
) -> None:
    if limit and content.attachment_bytes + len(data) > limit:
        content.defects.append(
            f"attachment {filename!r} ({len(data)} bytes) not kept: over the {limit} byte limit per mail"
        )
        data, omitted = b"", len(data)
    content.attachment_bytes += len(data)
    cid = None
    disposition = None
    if part is not None:
        disposition = part.get_content_disposition()
        raw_cid = part.get("content-id")
        if raw_cid:
            cid = header_text(raw_cid).strip().strip("<>").strip() or None
    inline = disposition == "inline" or (cid is not None and disposition is None)
    content.attachments.append(
        Part(filename=filename, content_type=ctype, data=data, content_id=cid, inline=inline, omitted_size=omitted)
    )


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def _encoded_size(part: Message) -> int:
    """The decoded size of a leaf, estimated from its encoded payload (without decoding it)."""
    payload = _raw_payload(part)
    size = len(payload) if isinstance(payload, (str, bytes)) else 0
    cte = header_text(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64" and isinstance(payload, str):
        return (size - payload.count("\n") - payload.count("\r")) * 3 // 4  # line ends carry no data
    return size * 3 // 4 if cte == "base64" else size


def _raw_payload(part: Message) -> object:
    """The payload as parsed. ``get_payload()`` would decode 8-bit text with the declared
    charset and replace what does not fit, losing the bytes."""
    return getattr(part, "_payload", None)


def _leaf_bytes(part: Message) -> bytes:
    payload = _raw_payload(part)
    if isinstance(payload, bytes):
        raw = payload
    elif isinstance(payload, str):
        # compat32 keeps 8-bit bytes as surrogates; this gives back exactly what came.
        raw = payload.encode("ascii", "surrogateescape") if payload.isascii() else _to_bytes(payload)
    else:
        return b""
    return decode_transfer(raw, header_text(part.get("content-transfer-encoding", "")))


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # real non-ASCII text (a part built from str): UTF-8
        return text.encode("utf-8", "surrogateescape")


def _leaf_text(part: Message, content: MimeContent) -> str:
    payload = _raw_payload(part)
    if isinstance(payload, str) and len(payload) > MAX_TEXT_CHARS * 2:
        # Cut the encoded text at a line end before decoding: bounded work, and the
        # transfer encodings we meet are line-based.
        cut = payload.rfind("\n", 0, MAX_TEXT_CHARS * 2)
        part.set_payload(payload[: cut if cut > 0 else MAX_TEXT_CHARS * 2])
        content.defects.append("body text cut: longer than the text limit")
    data = _leaf_bytes(part)
    charset = None
    with contextlib.suppress(Exception):  # an odd charset parameter: guess
        charset = part.get_content_charset()
    decoded = decode_bytes(data, charset, content.charsets.declared)
    if decoded.defect:
        content.defects.append(decoded.defect)
    content.charsets.note(decoded.repair and "body-" + decoded.repair)
    return decoded.text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_TEXT_CHARS]


def _blocks_text(blocks: Sequence[object]) -> str:
    """The text of a message/delivery-status part, from the header blocks compat32 made."""
    out = []
    for block in blocks:
        if isinstance(block, Message):
            out.append("\n".join(f"{header_text(k)}: {header_text(v)}" for k, v in block.raw_items()))
    return "\n\n".join(out)
