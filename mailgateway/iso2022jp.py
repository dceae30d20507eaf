"""ISO-2022-JP as Microsoft's CP50220 family reads it: NEC and IBM rows included.

Japanese mail from Windows and phones says iso-2022-jp but uses vendor rows (circled digits,
roman numerals, NEC-selected IBM kanji) that Python's iso2022_jp codecs refuse. Shift_JIS is
the same JIS grid rearranged by arithmetic, and cp932 knows every vendor row, so each
two-byte JIS character is moved to its Shift_JIS position and the whole decoded as cp932.
Half-width katakana (ESC ( I, or SO/SI as CP50221 sends it) becomes its one-byte cp932 form.
Raw 8-bit bytes (Shift_JIS sent as is, which happens) pass through unchanged.
"""

from __future__ import annotations

_ESCAPES = {
    b"\x1b(B": "ascii", b"\x1b(J": "ascii", b"\x1b(H": "ascii",
    b"\x1b$@": "jis", b"\x1b$B": "jis", b"\x1b&@\x1b$B": "jis", b"\x1b$(B": "jis", b"\x1b$(Q": "jis",
    b"\x1b(I": "kana",
}
_MARKERS = (b"\x1b$B", b"\x1b$@", b"\x1b(I", b"\x1b$(Q")


def looks_iso2022jp(data: bytes) -> bool:
    return any(marker in data for marker in _MARKERS)


def to_shift_jis(data: bytes) -> bytes | None:
    """The same text as Shift_JIS bytes, or None for escapes outside CP50220 (JIS X 0212, ISO-2022-JP-2)."""
    out = bytearray()
    mode = "ascii"
    shifted = False  # SO ... SI: half-width katakana
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x1B:
            for escape, new_mode in _ESCAPES.items():
                if data.startswith(escape, i):
                    mode, i = new_mode, i + len(escape)
                    break
            else:
                return None
            continue
        if byte in (0x0E, 0x0F):
            shifted, i = byte == 0x0E, i + 1
            continue
        if byte in (0x0A, 0x0D):
            mode, shifted = "ascii", False  # a line end ends any shift (senders forget ESC ( B)
            out.append(byte)
            i += 1
        elif (mode == "kana" or shifted) and 0x21 <= byte <= 0x5F:
            out.append(byte + 0x80)
            i += 1
        elif mode == "jis" and 0x21 <= byte <= 0x7E and i + 1 < n and 0x21 <= data[i + 1] <= 0x7E:
            out += _jis_to_sjis(byte, data[i + 1])
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 & 1:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return bytes((s1, s2))


def decode_iso2022jp(data: bytes) -> str | None:
    """The text, or None when it is not CP50220 (the caller tries the standard codecs)."""
    sjis = to_shift_jis(data)
    if sjis is None:
        return None
    try:
        return sjis.decode("cp932")
    except UnicodeDecodeError:
        return None
