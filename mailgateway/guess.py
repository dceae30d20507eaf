"""Which charset undeclared 8-bit text is in: the mail's own declared charsets first, then
charset-normalizer's candidates, ranked by how plausible each reading looks as text.

charset-normalizer alone ranks short texts badly (a five-character GBK subject comes out as
Korean, a KOI8-R one as Hebrew with vowel points): every candidate decodes without error and
its chaos measure needs more text. So each reading is scored here by what real text rarely
has: controls, combining marks on their own, compatibility jamo and half-width kana, Chinese
characters outside everyday use, letters of two scripts in one word, odd symbols inside words.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from collections.abc import Iterable

from charset_normalizer import from_bytes

# Charsets mail is actually written in; charset-normalizer looks only at these.
MAIL_CHARSETS = [
    "utf_8", "gb18030", "cp932", "euc_jp", "big5hkscs", "cp949", "koi8_r", "cp1251", "cp1252", "cp1250",
    "iso8859_2", "cp1253", "cp1254", "cp1257", "koi8_u", "cp1255", "cp1256", "cp874", "iso8859_5",
    "iso8859_7", "iso8859_15",
]
SAMPLE_BYTES = 16 * 1024  # of a body, enough to rank candidates; the chosen codec reads all of it
_MIXABLE = {"CJK", "HIRAGANA", "KATAKANA"}  # Japanese writes these side by side
_LATIN = {"cp1250", "cp1252", "cp1254", "cp1257", "iso8859_2", "iso8859_15"}
_JAPANESE = {"cp932", "euc_jp", "shift_jis", "euc_jis_2004", "shift_jis_2004", "euc_jisx0213"}
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_ODD_AFTER_LETTER = {"Sm", "Sc", "Sk", "So", "No"}
_KOREAN = {"cp949", "euc_kr"}
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Arabic letters that have a fixed place in a word: alef with hamza below starts one, teh marbuta
# ends one. A KOI8-R word read as windows-1256 puts them anywhere.
_ARABIC_MISPLACED = re.compile(r"[\u0621-\u064a]\u0625|\u0629[\u0621-\u064a]")


def guess_text(data: bytes, preferred: Iterable[str] = ()) -> tuple[str, str] | None:
    """(text, codec) for the most plausible strict reading of ``data``, or None when none decodes."""
    candidates = list(dict.fromkeys(c for c in preferred if c))
    declared = len(candidates)
    try:
        # charset-normalizer's order: for longer texts its language coherence ranks well
        detected = [m.encoding for m in from_bytes(data[:SAMPLE_BYTES], cp_isolation=MAIL_CHARSETS)]
    except Exception:  # noqa: BLE001 - detection is a hint; without it the declared charsets still count
        detected = []
    if detected and detected[0] in _LATIN and "cp1252" in detected:
        # Latin-script text that reads the same in several: windows-1252 is by far the most sent.
        detected.insert(0, "cp1252")
    candidates += detected
    best: tuple[int, int, str, str] | None = None
    for index, codec in enumerate(dict.fromkeys(candidates)):
        try:
            text = data.decode(codec)
            text.encode("utf-8")  # some codecs yield lone surrogates
        except (UnicodeError, LookupError):
            continue
        score = implausibility(text[:SAMPLE_BYTES])
        if index >= declared:  # a Japanese name is kanji only: no doubt about a declared charset
            score += _language_mismatch(text, codec)
        if best is None or (score, index) < best[:2]:
            best = (score, index, text, codecs.lookup(codec).name)
    return (best[2], best[3]) if best else None


def _language_mismatch(text: str, codec: str) -> int:
    """Japanese is rarely written without kana, and nothing else is written with it: a kana-less
    Japanese reading of Chinese, or a Chinese reading of Japanese (GB 2312 has kana too), ranks after.
    Likewise a Korean reading made of Hanja only."""
    kana = len(_KANA.findall(text))
    name = codecs.lookup(codec).name
    if name in _JAPANESE:
        return 1 if not kana and _HAN.search(text) else 0
    if name in _KOREAN and _HAN.search(text) and not _HANGUL.search(text):
        return 1 + kana  # Korean is written in Hangul; Hanja alone is another script misread
    return kana


def implausibility(text: str) -> int:
    """How much of ``text`` looks like a wrong decoding (0: reads like real text)."""
    score = 0
    prev_script = ""
    prev_lower = False
    for ch in text:
        if ch.isascii():
            prev_script = "LATIN" if ch.isalpha() else ""
            prev_lower = ch.islower()
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Co", "Cn", "Cs") or ch == "\ufffd":
            score += 3
        elif category == "Mn":
            score += 2
        if not category.startswith("L"):
            if category in _ODD_AFTER_LETTER and prev_script:
                score += 1
            prev_script = ""
            continue
        script = _script(ch)
        if script in ("ODD", "RARE_HAN"):
            score += 2 if script == "ODD" else 1
            script = "CJK" if script == "RARE_HAN" else script
        if prev_script and script != prev_script and not {prev_script, script} <= _MIXABLE:
            score += 2
        if prev_script == script and ch.isupper() and (prev_lower or script in ("CYRILLIC", "GREEK")):
            score += 1  # case changing inside a word; capitals throughout are mostly KOI8 misread
        prev_script, prev_lower = script, ch.islower()
    return score + 2 * len(_ARABIC_MISPLACED.findall(text))


@functools.lru_cache(maxsize=8192)
def _script(ch: str) -> str:
    code = ord(ch)
    if 0x3130 <= code <= 0x318F or 0xFF61 <= code <= 0xFFDC or 0xF900 <= code <= 0xFAFF or 0x3400 <= code <= 0x4DBF:
        return "ODD"  # compatibility jamo, half-width forms, compatibility and extension-A ideographs
    if 0x4E00 <= code <= 0x9FFF:
        return "CJK" if _everyday_han(ch) else "RARE_HAN"
    name = unicodedata.name(ch, "")
    if name.startswith("HANGUL"):
        return "HANGUL" if _in_charset(ch, "euc_kr") else "ODD"  # outside KS X 1001's 2,350: rare
    return name.split(" ", 1)[0] if name else "ODD"


def _in_charset(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except UnicodeError:
        return False
    return True


def _everyday_han(ch: str) -> bool:
    """In the first (everyday) level of GB 2312, JIS X 0208 or Big5."""
    for codec, low, high in (("gb2312", 0xB0A1, 0xD7F9), ("cp932", 0x889F, 0x9872), ("big5", 0xA440, 0xC67E)):
        try:
            raw = ch.encode(codec)
        except UnicodeError:
            continue
        if len(raw) == 2 and low <= int.from_bytes(raw, "big") <= high:
            return True
    return False
