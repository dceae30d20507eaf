"""The MIME tree of one mail, walked once: body texts, attachments, report parts.

The walk is iterative with a part budget and a depth limit, so a MIME bomb or a mail
nested a thousand deep costs bounded time and never exhausts the stack. Attachments past
the per-mail size limit are not even decoded: they stay as empty ``Part``s with a defect.
"""

from __future__ import annotations

import email.parser
import enum
import mimetypes
import re
from dataclasses import dataclass, field
from email.message import Message
from email.generator import BytesGenerator
from email.policy import Compat32
from io import BytesIO

from core.mail import Part
from mailgateway.charset import MailCharsets, decode_bytes, decode_header_value, header_text
from mailgateway.transfer import decode_transfer
from mailgateway.uuencode import extract_uuencoded

MAX_PARTS = 2000  # parts walked; the rest of a MIME bomb is cut off (and said so)
MAX_DEPTH = 120  # nesting walked
MAX_TEXT_CHARS = 4 * 1024 * 1024  # of one body part (the raw mail keeps everything)
_MSGID = re.compile(r"<([^<>\s]+)>")
_ATTACHED_MESSAGES = ("message/rfc822", "message/global", "message/news")
_REPORT_LEAVES = ("message/feedback-report", "message/delivery-status", "text/rfc822-headers")


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
            _read_leaf(part, ctype, content, max_attachment_bytes, context)
            continue
        if part.get_content_maintype() == "message" and ctype not in _ATTACHED_MESSAGES:
            # Report parts (delivery-status, feedback-report, ...): compat32 made header blocks.
            if context is Context.BODY:
                _report_text(ctype, content).append(_blocks_text(payload))
            continue
        if depth >= MAX_DEPTH:
            content.defects.append(f"MIME nesting deeper than {MAX_DEPTH}: the rest was not read")
            continue
        children = [child for child in payload if isinstance(child, Message)]
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
) -> None:
    if ctype in _REPORT_LEAVES:
        if context is Context.BODY:
            _read_report_leaf(part, ctype, content)
        return
    disposition = part.get_content_disposition()
    filename = _filename(part)
    is_text = ctype in ("text/plain", "text/html") and disposition != "attachment"
    is_text = is_text and not (filename and disposition != "inline")
    if context is Context.FORWARD:
        if is_text:
            (content.forwarded_plain if ctype == "text/plain" else content.forwarded_html).append(
                _leaf_text(part, content)
            )
        return  # the forwarded message is kept whole as one .eml attachment
    if is_text and context is Context.BODY:
        text = _leaf_text(part, content)
        if ctype == "text/plain":
            text, files = extract_uuencoded(text)
            for name, data in files:
                _add_attachment(content, limit, name, _guess_type(name), data, None)
            content.plain.append(text)
        else:
            content.html.append(text)
        return
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
            return
    _add_attachment(content, limit, filename or _default_name(ctype), ctype, data, part, omitted)


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
    name = _filename(part) or (safe_filename(subject) or "message") + ".eml"
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


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - broken RFC 2231 parameters: no name
        return ""
    if not name:
        return ""
    return safe_filename(decode_header_value(name))


def safe_filename(name: str) -> str:
    """A file name without directories or control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().strip(".")
    return name[:200]


def _default_name(ctype: str) -> str:
    return "part" + (mimetypes.guess_extension(ctype, strict=False) or ".bin")


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
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001 - odd charset parameter: guess
        pass
    decoded = decode_bytes(data, charset, content.charsets.declared)
    if decoded.defect:
        content.defects.append(decoded.defect)
    content.charsets.note(decoded.repair and "body-" + decoded.repair)
    return decoded.text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_TEXT_CHARS]


def _blocks_text(blocks: list[object]) -> str:
    """The text of a message/delivery-status part, from the header blocks compat32 made."""
    out = []
    for block in blocks:
        if isinstance(block, Message):
            out.append("\n".join(f"{header_text(k)}: {header_text(v)}" for k, v in block.raw_items()))
    return "\n\n".join(out)
