"""Bytes and header values to text, whatever charset a mail claims.

Mail lies about charsets (declares us-ascii and sends UTF-8, names charsets that do not
exist, declares gb2312 and sends gb18030, sends raw GBK in a header). Decoding never raises:
it tries the declared charset (widened to its usual superset), then UTF-8, then the mail's
other declared charsets and charset-normalizer's candidates ranked by plausibility
(``guess``), and only then windows-1252; it says which repair it made.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.header import Header

from helpdesk.mailgateway.guess import guess_text, implausibility
from helpdesk.mailgateway.iso2022jp import decode_iso2022jp, looks_iso2022jp

# Charsets that senders use for their wider supersets.
_SUPERSETS = {
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "iso-8859-9": "cp1254",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-2022-jp": "iso2022_jp_ext",  # read as CP50220 first (iso2022jp)
    "iso-2022-jp-ms": "iso2022_jp_ext",
    "cp50220": "iso2022_jp_ext",
    "cp50221": "iso2022_jp_ext",
    "cp50222": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode-2-0-utf-7": "utf-7",
    "unicode-2-0-utf-7": "utf-7",
    "csunicode11utf7": "utf-7",
    "utf7": "utf-7",
    "x-user-defined": "cp1252",
}
_JIS = {"iso2022_jp", "iso2022_jp_ext", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_3", "iso2022_jp_2004"}
_UTF7_RUN = re.compile(r"\+[A-Za-z0-9+/]{3,}-?")
_UNKNOWN = {"", "unknown", "unknown-8bit", "x-unknown", "default", "charset", "8bit", "binary"}

# The payload may hold spaces and tabs (senders forget to encode them), never a line end.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\r\n]*?)\?=")
_ENCODED_WORD_BYTES = re.compile(rb"=\?([^?\s]+)\?[bBqQ]\?")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def codec_for(charset: str | None) -> str | None:
    """The Python codec to use for a declared charset, or None when it is unknown."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
    if name in _UNKNOWN:
        return None
    name = _SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


@dataclass
class MailCharsets:
    """The charsets one mail declares anywhere (part headers, encoded words), to read the 8-bit
    text it does not declare; and the repairs made while reading it, for ``helpdesk parse``."""

    declared: list[str] = field(default_factory=list)  # Python codec names, first seen first
    repairs: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, charsets: Iterable[str | None]) -> MailCharsets:
        return cls(list(dict.fromkeys(c for c in map(codec_for, charsets) if c)))

    def note(self, repair: str | None) -> None:
        if repair and repair not in self.repairs:
            self.repairs.append(repair)


def _context(charsets: MailCharsets | str | None) -> MailCharsets:
    return charsets if isinstance(charsets, MailCharsets) else MailCharsets.of([charsets])


@dataclass(frozen=True)
class Decoded:
    text: str
    defect: str | None = None  # for ParsedMail.defects: the declared charset did not fit
    repair: str | None = None  # for the repairs list: what was guessed


def decode_bytes(data: bytes, charset: str | None = None, hints: Iterable[str] = ()) -> Decoded:
    """Text for bytes, never raising: declared charset, UTF-8, a guess, windows-1252."""
    codec = codec_for(charset)
    if codec in _JIS or (codec in (None, "utf-8", "ascii") and looks_iso2022jp(data)):
        text = decode_iso2022jp(data)
        if text is not None:
            return Decoded(_checked_or_none(text) or text.encode("utf-8", "replace").decode(), None,
                           None if codec in _JIS else "charset-guessed:iso-2022-jp")
    if codec:
        try:
            return Decoded(_checked(data.decode(codec)))
        except (UnicodeError, LookupError):
            pass
    try:
        text = _checked(data.decode("utf-8"))
        return Decoded(text, None if codec is None and not charset else f"charset {charset!r} did not fit; read as utf-8")
    except UnicodeError:
        pass
    said = f"charset {charset!r} did not fit" if charset else "no charset declared"
    if codec and codec not in ("utf-8", "cp1252"):
        # The declared charset with a few bad bytes still beats a guess.
        text = _checked_or_none(data.decode(codec, "replace"))
        if text is not None and text.count("\ufffd") * 200 <= len(text):
            return Decoded(text, f"charset {charset!r}: undecodable bytes replaced")
    guessed = guess_text(data, [*([codec] if codec else []), *hints])
    if _has_utf8_sequence(data):
        # UTF-8 with some single-byte text pasted in (a signature, a quoted older mail), if
        # that reads better than any one charset.
        mixed = data.decode("utf-8", "helpdesk-cp1252")
        if guessed is None or implausibility(mixed) < implausibility(guessed[0]):
            return Decoded(mixed, f"{said}; read as utf-8 with windows-1252", "charset-mixed:utf-8+windows-1252")
    if guessed is not None:
        text, found = guessed
        return Decoded(text, f"{said}; read as {found}", f"charset-guessed:{found}")
    text = data.decode("cp1252", "helpdesk-cp1252")
    return Decoded(text, f"{said}; read as windows-1252", "charset-guessed:cp1252")


def _cp1252_or_latin1(error: UnicodeError) -> tuple[str, int]:
    """Error handler: bytes that are not UTF-8 (or not cp1252) read one by one as windows-1252, else latin-1."""
    assert isinstance(error, UnicodeDecodeError)
    chunk = error.object[error.start : error.end]
    return "".join(bytes([b]).decode("cp1252", "ignore") or chr(b) for b in chunk), error.end


codecs.register_error("helpdesk-cp1252", _cp1252_or_latin1)
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _has_utf8_sequence(data: bytes) -> bool:
    return _UTF8_SEQUENCE.search(data) is not None


def _checked(text: str) -> str:
    """Some codecs produce lone surrogates; those are not text and break UTF-8 output."""
    text.encode("utf-8")
    return text


def _checked_or_none(text: str) -> str | None:
    try:
        return _checked(text)
    except UnicodeError:
        return None


def header_text(value: object, charsets: MailCharsets | str | None = None) -> str:
    """A raw header value (compat32 keeps 8-bit bytes as surrogates) as unfolded text."""
    if value is None:
        return ""
    if isinstance(value, Header):
        value = str(value)
    if not isinstance(value, str):
        value = str(value)
    if not value.isascii() and any("\udc80" <= ch <= "\udcff" for ch in value):
        value = _raw_header_text(value.encode("utf-8", "surrogateescape"), _context(charsets))
    if "\n" not in value and "\r" not in value:
        return value  # the common case: one line, nothing to unfold
    return _FOLD.sub("", value).replace("\r", "").replace("\n", " ")


def _raw_header_text(raw: bytes, context: MailCharsets) -> str:
    """8-bit header bytes: the charset of the encoded words beside them, the mail's own, a guess."""
    hints = [codec_for(m.group(1).decode("ascii", "replace")) for m in _ENCODED_WORD_BYTES.finditer(raw)]
    decoded = decode_bytes(raw, None, [h for h in hints if h] + context.declared)
    if decoded.repair:
        context.note("header-" + decoded.repair)
    return decoded.text


def word_charsets(value: str) -> list[str]:
    """The charset labels of the encoded words in a (raw) header value."""
    return [m.group(1) for m in _ENCODED_WORD.finditer(value)] if "=?" in value else []


def utf7_text(value: str, context: MailCharsets) -> str:
    """A header written raw in UTF-7 (old Outlook did) when the mail declares UTF-7 somewhere."""
    if "utf-7" not in context.declared or not value.isascii() or not _UTF7_RUN.search(value):
        return value
    try:
        text = value.encode("ascii").decode("utf-7")
    except UnicodeError:
        return value
    if text != value:
        context.note("header-utf7")
    return text


def decode_words(value: str, charsets: MailCharsets | None = None) -> str:
    """RFC 2047 encoded words decoded; text around them left as it is.

    Adjacent words are joined before decoding (the whitespace between them is not text),
    so a multi-byte character split across two words survives. Words with spaces or 8-bit
    text inside, or glued to the text around them, are read too (and noted as repaired).
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        data = _word_bytes(match)
        if data is None:
            continue
        if charsets is not None and (_malformed(match) or (between and not between.isspace() and pos)):
            charsets.note("encoded-word-repaired")
        charset = match.group(1).lower()
        if pending is None or between.strip(" \t") or pending[0] != charset:
            if pending is not None:
                out.append(_word_text(pending, charsets))
                pending = None
            if between.strip(" \t") or pos == 0:
                out.append(between)
            pending = (charset, bytearray(data))
        else:
            pending[1].extend(data)
        pos = match.end()
    if pending is not None:
        out.append(_word_text(pending, charsets))
    out.append(value[pos:])
    return "".join(out)


def _word_text(pending: tuple[str, bytearray], charsets: MailCharsets | None) -> str:
    decoded = decode_bytes(bytes(pending[1]), pending[0].split("*", 1)[0])
    if charsets is not None and decoded.repair and codec_for(pending[0]) not in _JIS:
        charsets.note("encoded-word-" + decoded.repair)
    return decoded.text


def _malformed(match: re.Match[str]) -> bool:
    payload = match.group(3)
    return not payload.isascii() or " " in payload or "\t" in payload


def _word_bytes(match: re.Match[str]) -> bytes | None:
    encoding, payload = match.group(2).lower(), match.group(3)
    try:
        if encoding == "b":
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        return quopri.decodestring(_payload_bytes(payload, match.group(1)).replace(b"_", b" "), header=True)
    except (ValueError, TypeError, binascii.Error):
        return None


def _payload_bytes(payload: str, charset: str) -> bytes:
    """A Q payload with raw 8-bit text in it (already read as text) back to bytes of the word's charset."""
    if payload.isascii():
        return payload.encode("ascii")
    for codec in (codec_for(charset), "utf-8"):
        if codec and codec not in _JIS:
            try:
                return payload.encode(codec)
            except (UnicodeError, LookupError):
                continue
    return payload.encode("utf-8", "surrogateescape")


def decode_header_value(value: object, charsets: MailCharsets | str | None = None) -> str:
    """A header value as the reader should see it: 8-bit bytes and encoded words decoded."""
    context = _context(charsets)
    return decode_words(header_text(value, context), context).strip()
