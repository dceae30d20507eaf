"""Raw mail bytes -> ``core.mail.ParsedMail``, for every mail the world sends.

The structure comes from the standard library's parser with the ``compat32`` policy: it
never decodes on access, so lying charsets and 8-bit headers cannot raise while we walk
(the default policy raises UnicodeDecodeError on some real mail). mail-parser reads the
fields it has been hardened for (addresses, dates); texts are decoded with explicit
fallbacks (``charset``), and the MIME walk is bounded (``mime``).
"""

from __future__ import annotations

import email.parser
import email.utils
import hashlib
import re
from dataclasses import asdict, replace
from datetime import datetime
from email.feedparser import BytesFeedParser
from email.message import Message
from typing import Any

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from helpdesk.core.mail import Address, ParsedMail
from helpdesk.core.safehtml import SafeHtml, sanitise
from helpdesk.mailgateway.charset import MailCharsets, decode_words, header_text, utf7_text, word_charsets
from helpdesk.mailgateway.folding import repair_folding
from helpdesk.mailgateway.guess import SAMPLE_BYTES, guess_text
from helpdesk.mailgateway.html import html_to_text
from helpdesk.mailgateway.mime import READ_POLICY, MimeContent, declared_charsets, message_ids, read_headers, walk_tree
from helpdesk.mailgateway.protection import inline_pgp, stronger
from helpdesk.mailgateway.quotes import strip_quotes

MAX_ADDRESS_HEADER = 64 * 1024  # characters of one address header given to the address parser
_FEED_CHUNK = 64 * 1024
_ADDRESS_HEADERS = {"from": "from_", "to": "to", "cc": "cc", "reply-to": "reply_to"}
# Where a sender is looked for when From has no usable address, in this order.
_SENDER_FALLBACKS = ("sender", "reply-to", "return-path")


class UnreadableMail(Exception):
    """Nothing sensible could be read out of the bytes; the message is the short reason."""


def normalise_line_endings(raw: bytes) -> bytes:
    """CR-only and mixed line endings become LF (CRLF-only mail parses fine as it is)."""
    bare_cr = raw.count(b"\r") - raw.count(b"\r\n")
    if bare_cr <= 0:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def parse_message(raw: bytes, *, max_attachment_bytes: int = 25 * 1024 * 1024) -> ParsedMail:
    """Read one mail. Raises ``UnreadableMail`` only when nothing sensible can be read.

    Attachments beyond ``max_attachment_bytes`` in total stay as ``Part``s with empty data,
    and ``defects`` says so; the mail itself is still read.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise UnreadableMail("not bytes")
    raw = normalise_line_endings(bytes(raw))
    if not raw.strip():
        raise UnreadableMail("empty message")
    raw, refolded = repair_folding(raw)
    try:
        try:
            message = _parse_bytes(raw)
            structure_defect = None
        except RecursionError:
            # Nested deeper than the stdlib parser can go: the headers still make a ticket.
            message = email.parser.BytesParser(policy=READ_POLICY).parsebytes(raw, headersonly=True)
            message.set_payload("")
            structure_defect = "MIME structure nested too deeply to read; only the headers were read"
        parsed = _read(message, max_attachment_bytes)
    except UnreadableMail:
        raise
    except RecursionError:
        raise UnreadableMail("message nested too deeply") from None
    except MemoryError:
        raise UnreadableMail("message too large to read") from None
    except Exception as exc:  # any parser bug on hostile input is "unreadable"
        raise UnreadableMail(f"parser failed: {type(exc).__name__}: {exc}"[:200]) from exc
    if structure_defect:
        parsed.defects.insert(0, structure_defect)
    if refolded:
        parsed.repairs.insert(0, "folding-repaired")
    return _without_nul(parsed)


def _binary(data: bytes) -> bool:
    """Control characters (other than tab and line ends) in more than 5% of the first 4 kB."""
    head = data[:4096]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13) or b == 127)
    return bool(head) and controls > len(head) // 20


def _clean(text: str) -> str:
    # PostgreSQL's text columns refuse NUL; SQLite's take it. Same mail, same ticket, on both.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _without_nul(mail: ParsedMail) -> ParsedMail:
    """Text with U+FFFD for NUL; Message-IDs stay as they are (one with a NUL is unusable, and dropped later)."""
    def address(a: Address | None) -> Address | None:
        return Address(_clean(a.address), _clean(a.name)) if a is not None else None

    def addresses(found: list[Address]) -> list[Address]:
        return [Address(_clean(a.address), _clean(a.name)) for a in found]

    def headers(found: dict[str, list[str]]) -> dict[str, list[str]]:
        return {_clean(name): [_clean(v) for v in values] for name, values in found.items()}

    return replace(
        mail,
        from_=address(mail.from_), to=addresses(mail.to), cc=addresses(mail.cc), reply_to=addresses(mail.reply_to),
        subject=_clean(mail.subject), text=_clean(mail.text), reply_text=_clean(mail.reply_text),
        html=_clean(mail.html) if mail.html is not None else None,
        attachments=[replace(p, filename=_clean(p.filename)) for p in mail.attachments],
        headers=headers(mail.headers), attached_headers=[headers(h) for h in mail.attached_headers],
        delivery_status=_clean(mail.delivery_status) if mail.delivery_status else mail.delivery_status,
        feedback_report=_clean(mail.feedback_report) if mail.feedback_report else mail.feedback_report,
        defects=[_clean(d) for d in mail.defects],
        embedded_message_ids=[m for m in mail.embedded_message_ids if "\x00" not in m],
    )


def _parse_bytes(raw: bytes) -> Message:
    """The MIME tree, fed in chunks: the parser never holds a second full copy of the mail."""
    parser = BytesFeedParser(policy=READ_POLICY)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(bytes(view[start : start + _FEED_CHUNK]))
    return parser.close()


def _read(message: Message, max_attachment_bytes: int) -> ParsedMail:
    if not message.keys() and not str(message.get_payload()).strip():
        raise UnreadableMail("no headers and no body")
    if not message.keys() and _binary(str(message.get_payload(decode=False) or "").encode("utf-8", "surrogateescape")):
        # A headerless text is read as a body (some tools pipe just that); binary noise is no mail.
        raise UnreadableMail("not a mail: no header, and the content is binary")
    charsets = _charsets(message)
    headers = read_headers(message, charsets)
    content = walk_tree(message, max_attachment_bytes, charsets)
    text, html_source = _body(content)
    protection = content.protection
    if (armour := inline_pgp(text)) is not None:
        protection = stronger(protection, armour)
        charsets.note("encrypted-not-read" if protection is armour.ENCRYPTED else "signature-not-verified")
    safe = sanitise(html_source) if html_source else SafeHtml(None)

    raw_addresses = _raw_address_headers(message, charsets)
    addresses = {attr: _addresses(raw_addresses.get(name, [])) for name, attr in _ADDRESS_HEADERS.items()}
    sender, from_source = _sender(message, raw_addresses, addresses["from_"], charsets)
    content_type = message.get_content_type()
    report_type = message.get_param("report-type") if content_type == "multipart/report" else None
    return ParsedMail(
        from_=sender,
        from_source=from_source,
        to=addresses["to"],
        cc=addresses["cc"],
        reply_to=addresses["reply_to"],
        subject=utf7_text(_first(headers, "subject"), charsets),
        date=_date(_first(headers, "date")),
        message_id=_first_id(_first(headers, "message-id")),
        in_reply_to=_first_id(_first(headers, "in-reply-to")),
        references=message_ids(" ".join(headers.get("references", []))),
        text=text,
        reply_text=strip_quotes(text),
        html=safe.html,
        html_note=safe.note,
        attachments=content.attachments,
        headers=headers,
        content_type=content_type,
        report_type=header_text(report_type).strip().lower() or None if report_type else None,
        embedded_message_ids=list(dict.fromkeys(content.embedded_ids)),
        delivery_status="\n\n".join(content.delivery_status) or None,
        feedback_report="\n\n".join(content.feedback_report) or None,
        attached_headers=content.attached_headers,
        defects=list(dict.fromkeys(_message_defects(message) + content.defects)),
        repairs=charsets.repairs,
        protection=protection,
        calendar=content.calendar,
    )


def _charsets(message: Message) -> MailCharsets:
    """Every charset the mail declares: its parts' and its headers' encoded words."""
    words = [label for _, value in message.raw_items() for label in word_charsets(str(value)[:4096])]
    charsets = MailCharsets.of([*declared_charsets(message), *words])
    # All the raw 8-bit header text read together: one name or a short subject alone is too
    # little to tell GBK from Shift_JIS, all of them together usually is not.
    raw = b"\n".join(
        str(value).encode("utf-8", "surrogateescape") for _, value in message.raw_items() if not str(value).isascii()
    )
    if raw and not _is_utf8(raw) and (guessed := guess_text(raw[:SAMPLE_BYTES], charsets.declared)):
        charsets.declared.insert(0, guessed[1])
    return charsets


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _body(content: MimeContent) -> tuple[str, str]:
    """The full text and the HTML source of the sender's own message."""
    text = "\n\n".join(t.strip("\n") for t in content.plain if t.strip())
    html_source = "\n".join(content.html)
    if not text and html_source:
        text = html_to_text(html_source)
    if not text and not html_source:
        # Outlook's winmail.dat held the body (its plain or its HTML form).
        text = "\n\n".join(t for t in content.tnef_text if t.strip())
        html_source = "\n".join(h for h in content.tnef_html if h.strip())
        if not text and html_source:
            text = html_to_text(html_source)
    if not text and not html_source:
        # Only a forwarded message (a bare forward): its text is what the sender meant.
        text = "\n\n".join(t.strip("\n") for t in content.forwarded_plain if t.strip())
        if not text and content.forwarded_html:
            text = html_to_text("\n".join(content.forwarded_html))
    return text, html_source


def _first(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0].strip() if values else ""


def _first_id(value: str) -> str | None:
    ids = message_ids(value)
    return ids[0] if ids else None


def _raw_address_headers(message: Message, charsets: MailCharsets) -> dict[str, list[str]]:
    """Address headers with 8-bit text decoded but encoded words kept: a word may hold a comma."""
    found: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        key = header_text(name).strip().lower()
        if key in _ADDRESS_HEADERS or key in _SENDER_FALLBACKS:
            found.setdefault(key, []).append(header_text(value, charsets))
    return found


def _usable(address: Address) -> bool:
    local, at, domain = address.address.rpartition("@")
    if local.startswith('"') and local.endswith('"') and len(local) > 2:
        local = "quoted"  # a quoted local part may hold spaces
    return bool(at and local and domain) and not any(ch.isspace() for ch in local + domain)


def _sender(
    message: Message, raw: dict[str, list[str]], from_: list[Address], charsets: MailCharsets
) -> tuple[Address | None, str]:
    """The requester: From's first usable address, else a repaired From, else Sender, Reply-To,
    Return-Path, the mbox From_ line. Each step past a plain From is noted as a repair."""
    usable = [a for a in from_ if _usable(a)]
    if usable:
        return _tidy(usable[0], charsets), "from"
    named = from_[0].name if from_ else ""
    salvaged = _salvage(raw.get("from", []))
    if salvaged is not None:
        charsets.note("from-repaired")
        return _tidy(salvaged, charsets), "from"
    unixfrom = (message.get_unixfrom() or "").split()
    candidates = [(name, raw.get(name, [])) for name in _SENDER_FALLBACKS]
    candidates.append(("mbox", [unixfrom[1]] if len(unixfrom) > 1 else []))
    for name, values in candidates:
        found = next((a for a in _addresses(values) if _usable(a)), None) or _salvage(values)
        if found is not None:
            charsets.note(f"from-fallback:{name}")
            return _tidy(Address(found.address, found.name or named), charsets), name
    charsets.note("no-sender")
    return (Address("", named) if named else None), ""


_ANGLE_ADDRESS = re.compile(r"<\s*([^<>\s\"]+@[^<>\s\"]+?)\s*>")
_BARE_ADDRESS = re.compile(r"[^\s<>\"(),;:\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _salvage(values: list[str]) -> Address | None:
    """An address found in a header the address parser made nothing usable of."""
    for value in values:
        value = value[:MAX_ADDRESS_HEADER]
        if found := _ANGLE_ADDRESS.findall(value):
            name = value[: value.rfind("<")]
            return Address(found[-1].lower(), " ".join(decode_words(name).strip().strip('"').split()))
        if match := _BARE_ADDRESS.search(value):
            name = value[: match.start()] if match.start() else ""
            return Address(match.group().lower(), " ".join(decode_words(name).strip().strip('"').split()))
    return None


def _tidy(address: Address, charsets: MailCharsets) -> Address:
    """A trailing dot off the domain (it is written as the end of a sentence)."""
    if address.address.endswith("."):
        charsets.note("from-repaired")
        return Address(address.address.rstrip("."), address.name)
    return address


# One plain address, or "Plain Name <address>": no quotes, comments, groups or encoded words.
_ATOM = r'[^\s<>,;:"()\\\[\]@]+'
_SIMPLE_ADDRESS = re.compile(rf'\s*(?:([^"<>,;:()\\@\[\]=]*?)\s*<({_ATOM}@{_ATOM})>|({_ATOM}@{_ATOM}))\s*')


def _simple_address(value: str) -> list[tuple[str, str]] | None:
    """The reading of an address header too simple to need the full parser (the same answer, faster).

    A list of such addresses too: a Cc of thousands is read in linear time, at regex speed.
    """
    if not value.isascii() or '"' in value:  # a quoted name may hold a comma
        return None
    found = []
    for item in value.split(","):
        if not item.strip():
            continue
        if not (m := _SIMPLE_ADDRESS.fullmatch(item)):
            return None
        found.append(("", m.group(3)) if m.group(3) else (" ".join(m.group(1).split()), m.group(2)))
    return found or None


def _addresses(values: list[str]) -> list[Address]:
    result: list[Address] = []
    for value in values:
        value = value[:MAX_ADDRESS_HEADER]
        try:
            pairs = _simple_address(value) or get_addresses(value, decode_names=True)
        except Exception:  # noqa: BLE001 - fall back to the stdlib's lenient reading
            pairs = email.utils.getaddresses([value])
        for name, addr in pairs:
            if not addr and not name:
                continue
            # Control characters (an encoded CR/LF in a name) would break every line the name is shown in.
            result.append(Address(address=addr.strip().lower(), name=" ".join(decode_words(name).split())))
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
        found: datetime | None = parse_mail_date(value).value  # mail-parser is untyped
        return found
    except Exception:  # noqa: BLE001 - an unreadable date is no date
        return None


def _message_defects(message: Message) -> list[str]:
    return [type(defect).__name__ for defect in getattr(message, "defects", [])]


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
        "from_source": parsed.from_source,
        "repairs": list(parsed.repairs),
        "protection": parsed.protection.value if parsed.protection else None,
        "calendar": [asdict(event) for event in parsed.calendar],
    }
