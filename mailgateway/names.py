"""Attachment file names as senders meant them, and a sensible one when they gave none.

Names come raw 8-bit, RFC 2231-encoded (sometimes half right: no charset quotes, one quote,
an unknown charset) or RFC 2047-encoded inside quotes. The standard library answers U+FFFD
for the first and gives up on the broken kinds of the second, so the parameter is read from
the raw header here, as bytes, and decoded with the mail's own charsets.
"""

from __future__ import annotations

import codecs
import mimetypes
import re
from email.message import Message

from helpdesk.mailgateway.charset import MailCharsets, codec_for, decode_bytes, decode_words

# Types whose files have a conventional name: a signature is smime.p7s wherever it is saved.
_CONVENTIONAL = {
    "application/pkcs7-signature": "smime.p7s",
    "application/x-pkcs7-signature": "smime.p7s",
    "application/pkcs7-mime": "smime.p7m",
    "application/x-pkcs7-mime": "smime.p7m",
    "application/pgp-signature": "signature.asc",
    "application/pgp-encrypted": "pgp-version.txt",  # the control part of PGP/MIME: "Version: 1"
    "text/calendar": "invite.ics",
    "application/ics": "invite.ics",
    "application/vnd.ms-outlook": "message.msg",
    "application/ms-tnef": "winmail.dat",
    "application/vnd.ms-tnef": "winmail.dat",
    "message/delivery-status": "delivery-status.txt",
    "message/global-delivery-status": "delivery-status.txt",
    "text/rfc822-headers": "returned-headers.txt",
}
_EXTENSIONS = {"text/plain": ".txt", "image/jpeg": ".jpg", "application/octet-stream": ".bin"}
_ONE_QUOTE = re.compile(r"^([A-Za-z][\w.:-]*)'(?:[A-Za-z-]*')?(.*)$", re.DOTALL)
_FOLD = re.compile(r"\r?\n[ \t]*")


def filename(part: Message, charsets: MailCharsets) -> str:
    """The name the sender gave the part (Content-Disposition filename, else Content-Type name), decoded."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        name = _param_text(part, header, param, charsets)
        if name:
            return safe_filename(name)
    return ""


def fallback_name(part: Message | None, ctype: str, charsets: MailCharsets) -> str:
    """A name for a part that has none: its Content-ID (image001.jpg@...), its type's usual
    file name, else ``attachment`` with its type's extension. Never ``part.xyz``."""
    extension = extension_for(ctype)
    cid = str(part.get("content-id", "") or "") if part is not None else ""
    local = safe_filename(_FOLD.sub("", cid).strip().strip("<>").split("@")[0]) if cid else ""
    if local:
        charsets.note("attachment-named:content-id")
        known = mimetypes.guess_type(local, strict=False)[0] is not None
        return local if known else local + extension
    charsets.note("attachment-named:content-type")
    return _CONVENTIONAL.get(ctype) or "attachment" + extension


def extension_for(ctype: str) -> str:
    return _EXTENSIONS.get(ctype) or mimetypes.guess_extension(ctype, strict=False) or ".bin"


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``... when a generated name is already used."""
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, dot + ext) if stem else (name, "")
    n = 2
    while f"{stem}-{n}{ext}" in taken:
        n += 1
    return f"{stem}-{n}{ext}"


def safe_filename(name: str) -> str:
    """A file name without directories or control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().strip(".")
    return name[:200]


def _param_text(part: Message, header: str, param: str, charsets: MailCharsets) -> str:
    raw = next((str(v) for k, v in part.raw_items() if str(k).strip().lower() == header), None)
    if raw is None:
        return ""
    # One character per byte (latin-1), so the parameter parser keeps 8-bit bytes as they came.
    probe = Message()
    probe[header] = _FOLD.sub(" ", raw).encode("utf-8", "surrogateescape").decode("latin-1")
    try:
        value = probe.get_param(param, header=header)
    except Exception:  # noqa: BLE001 - parameters broken beyond reading: no name
        return ""
    if value is None:
        return ""
    if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded text, one char per byte)
        charset, _, text = value
        if not charset and (match := _ONE_QUOTE.match(text)) and codec_for(match.group(1)):
            charset, text = match.group(1), match.group(2)  # "utf-8'Pr%C3%BC...": the language quote left out
            charsets.note("filename-rfc2231-repaired")
        return _decoded(text.encode("latin-1", "surrogateescape"), charset or None, charsets)
    text = value.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1]
    name = _decoded(text.encode("latin-1", "surrogateescape"), None, charsets)
    return decode_words(name, charsets) if "=?" in name else name


def _decoded(data: bytes, charset: str | None, charsets: MailCharsets) -> str:
    if data.isascii():
        return data.decode("ascii")
    codec = codec_for(charset) if charset else None
    if codec:
        try:
            return codecs.decode(data, codec)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        decoded = decode_bytes(data, None, charsets.declared)
        charsets.note(decoded.repair and "filename-" + decoded.repair)
        return decoded.text
    if charset:
        charsets.note("filename-charset-repaired")  # declared wrongly or not at all, and it was UTF-8
    return text
