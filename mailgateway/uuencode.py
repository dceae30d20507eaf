"""Files uuencoded into a plain-text body (old Lotus Notes, Outlook Express, news).

``begin 644 name`` ... ``end`` blocks are cut out of the text and returned as files.
"""

from __future__ import annotations

import binascii
import re

_BEGIN = re.compile(r"^begin ([0-7]{3,4})(?: (.*))?$", re.MULTILINE)


def extract_uuencoded(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text without its uuencoded blocks, and the (name, bytes) of each block."""
    if "begin " not in text:
        return text, []
    files: list[tuple[str, bytes]] = []
    kept: list[str] = []
    pos = 0
    for match in _BEGIN.finditer(text):
        if match.start() < pos:
            continue
        end = text.find("\nend", match.end())
        if end < 0:
            break
        data = decode_uu_lines(text[match.end() : end].split("\n"))
        if data is None:
            continue
        kept.append(text[pos : match.start()])
        name = (match.group(2) or "").strip().replace("\\", "/").rsplit("/", 1)[-1] or "uuencoded.bin"
        files.append((name, data))
        line_end = text.find("\n", end + 1)
        pos = len(text) if line_end < 0 else line_end + 1
    kept.append(text[pos:])
    return "".join(kept).rstrip() + ("\n" if files else ""), files


def decode_uu_lines(lines: list[str]) -> bytes | None:
    out = bytearray()
    for line in lines:
        line = line.rstrip("\r")
        if not line or line == "`":
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders pad lines wrongly; the length byte says how much to keep.
            try:
                count = (ord(line[0]) - 32) & 63
                out += binascii.a2b_uu(line[: 1 + (count * 4 + 2) // 3])
            except (binascii.Error, IndexError):
                return None
    return bytes(out)
