"""Bytes and header values to text, whatever charset a mail claims.

Mail lies about charsets (declares us-ascii and sends UTF-8, names charsets that do not
exist, declares gb2312 and sends gb18030). Decoding never raises: it tries the declared
charset (widened to its usual superset), then UTF-8, then windows-1252, and says when it
had to fall back.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from email.header import Header

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
    "iso-2022-jp": "iso2022_jp_ext",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}
_UNKNOWN = {"", "unknown", "unknown-8bit", "x-unknown", "default", "charset", "8bit", "binary"}

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
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


def decode_bytes(data: bytes, charset: str | None = None) -> tuple[str, str | None]:
    """Text for bytes and, when the declared charset did not fit, a defect note."""
    codec = codec_for(charset)
    if codec:
        try:
            return _checked(data.decode(codec)), None
        except (UnicodeError, LookupError):
            pass
    try:
        return _checked(data.decode("utf-8")), (
            None if codec is None and not charset else f"charset {charset!r} did not fit; read as utf-8"
        )
    except UnicodeError:
        pass
    if codec and codec not in ("utf-8", "cp1252"):
        # The declared charset with a few bad bytes still beats a guess.
        try:
            return _checked(data.decode(codec, "replace")), f"charset {charset!r}: undecodable bytes replaced"
        except (UnicodeError, LookupError):
            pass
    try:
        text = data.decode("cp1252")
    except UnicodeError:
        text = data.decode("latin-1")
    return text, f"charset {charset!r} did not fit; read as windows-1252"


def _checked(text: str) -> str:
    """Some codecs produce lone surrogates; those are not text and break UTF-8 output."""
    text.encode("utf-8")
    return text


def header_text(value: object, fallback_charset: str | None = None) -> str:
    """A raw header value (compat32 keeps 8-bit bytes as surrogates) as unfolded text."""
    if value is None:
        return ""
    if isinstance(value, Header):
        value = str(value)
    if not isinstance(value, str):
        value = str(value)
    if not value.isascii() and any("\udc80" <= ch <= "\udcff" for ch in value):
        raw = value.encode("utf-8", "surrogateescape")
        value, _ = decode_bytes(raw, fallback_charset)
    if "\n" not in value and "\r" not in value:
        return value  # the common case: one line, nothing to unfold
    return _FOLD.sub("", value).replace("\r", "").replace("\n", " ")


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded; text around them left as it is.

    Adjacent words are joined before decoding (the whitespace between them is not text),
    so a multi-byte character split across two words survives.
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
        charset = match.group(1).lower()
        if pending is None or between.strip(" \t") or pending[0] != charset:
            if pending is not None:
                out.append(decode_bytes(bytes(pending[1]), pending[0])[0])
                pending = None
            if between.strip(" \t") or pos == 0:
                out.append(between)
            pending = (charset, bytearray(data))
        else:
            pending[1].extend(data)
        pos = match.end()
    if pending is not None:
        out.append(decode_bytes(bytes(pending[1]), pending[0])[0])
    out.append(value[pos:])
    return "".join(out)


def _word_bytes(match: re.Match[str]) -> bytes | None:
    encoding, payload = match.group(2).lower(), match.group(3)
    try:
        if encoding == "b":
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        return quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)
    except (ValueError, TypeError, binascii.Error):
        return None


def decode_header_value(value: object, fallback_charset: str | None = None) -> str:
    """A header value as the reader should see it: 8-bit bytes and encoded words decoded."""
    return decode_words(header_text(value, fallback_charset)).strip()
