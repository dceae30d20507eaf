"""Mail that breaks the rules the way real mail does: raw 8-bit headers in legacy charsets,
malformed encoded words, ISO-2022-JP with vendor rows, broken header folding, no usable From.
Each is read as the sender meant it, and ``repairs`` says what had to be repaired or guessed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpdesk.mailgateway.parse import parse_message, parsed_to_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def read(name: str):  # noqa: ANN201 - ParsedMail
    return parse_message((FIXTURES / name).read_bytes())


@pytest.mark.parametrize(("name", "subject", "sender", "body", "repairs"), [
    # GBK headers; only the body says gb2312
    ("raw_gbk_headers.eml", "打印机坏了，请帮忙修理一下", "张三", "三楼的打印机卡纸了。", ["header-charset-guessed:gb18030"]),
    # Shift_JIS everywhere and nothing declared: a name alone would read as Korean, the whole mail does not
    ("raw_sjis_headers.eml", "プリンターが壊れました", "山田 太郎", "お世話になっております。三階のプリンターが動きません。",
     ["header-charset-guessed:cp932", "body-charset-guessed:cp932"]),
])
def test_raw_8bit_headers_in_legacy_charsets(name: str, subject: str, sender: str, body: str, repairs: list[str]) -> None:
    mail = read(name)
    assert (mail.subject, mail.from_.name if mail.from_ else None, mail.text, mail.repairs) == (subject, sender, body, repairs)


@pytest.mark.parametrize(("text", "charset"), [
    ("Drukarka nie działa, proszę o pomoc", "iso-8859-2"),
    ("Принтер не работает, помогите", "windows-1251"),
    ("Ο εκτυπωτής δεν λειτουργεί", "iso-8859-7"),
    ("印表機壞了請幫忙處理", "big5"),
    ("Überweisung fehlgeschlagen, Grüße", "windows-1252"),
])
def test_raw_legacy_subject_follows_the_body_charset(text: str, charset: str) -> None:
    raw = (f"From: a@example.org\nSubject: {text}\nContent-Type: text/plain; charset={charset}\n\n{text}\n").encode(charset)
    mail = parse_message(raw)
    assert (mail.subject, mail.text) == (text, text)


@pytest.mark.parametrize("subject", ["тест тест", "пароль сброшен", "сервер упал", "не работает почта"])
def test_short_koi8_r_subject_with_nothing_declared_reads_as_russian(subject: str) -> None:
    # Request Tracker's corpus has such a mail: a few KOI8-R words tie with Arabic (windows-1256)
    # and Korean (Hanja only) readings that decode as cleanly.
    raw = b"From: a@example.org\nSubject: " + subject.encode("koi8_r") + b"\n\nhello\n"
    mail = parse_message(raw)
    assert (mail.subject, mail.repairs) == (subject, ["header-charset-guessed:koi8-r"])


def test_raw_8bit_bytes_inside_an_encoded_word() -> None:
    mail = parse_message(b"From: a@example.org\nSubject: =?iso-8859-1?Q?Fr\xf6sche_im_Keller?=\n\nx\n")
    assert mail.subject == "Frösche im Keller"
    assert "encoded-word-repaired" in mail.repairs


@pytest.mark.parametrize(("subject", "want"), [
    (b"=?iso-8859-1?Q?Fr=F6sche und Kr=F6ten?=", "Frösche und Kröten"),  # spaces inside the word
    (b"=?utf-8?Q?caf=C3=A9?==?utf-8?Q?_cr=C3=A8me?=", "café crème"),  # no space between words
    (b"Re:=?utf-8?B?w7xiZXI=?=", "Re:über"),  # glued to the text before it
    (b"=?unicode-1-1-utf-7?Q?Gr+APwA3w-e?=", "Grüße"),  # Outlook Express's label for UTF-7
])
def test_malformed_encoded_words(subject: bytes, want: str) -> None:
    assert parse_message(b"From: a@example.org\nSubject: " + subject + b"\n\nx\n").subject == want


def test_utf7_subject_and_body() -> None:
    mail = parse_message(b"From: a@example.org\nSubject: Gr+APwA3w-e\nContent-Type: text/plain; charset=utf-7\n\nGr+APwA3w-e\n")
    assert (mail.subject, mail.text) == ("Grüße", "Grüße")
    assert "header-utf7" in mail.repairs


def test_iso_2022_jp_with_nec_rows_in_subject_and_body() -> None:
    mail = read("iso2022jp_vendor_rows.eml")
    assert mail.subject == "①② 会議室"
    assert mail.text == "手順① 再起動"


@pytest.mark.parametrize("encode", ["iso2022_jp", "cp932", "euc_jp"])
def test_japanese_body_without_a_charset(encode: str) -> None:
    text = "お世話になっております。サーバーにログインできません。"
    mail = parse_message(b"From: a@example.org\nSubject: x\n\n" + text.encode(encode) + b"\n")
    assert mail.text == text
    assert any(r.startswith("body-charset-guessed:") for r in mail.repairs)


def test_broken_folding_keeps_the_headers_after_it() -> None:
    mail = read("broken_folding_spam_header.eml")
    assert mail.subject == "VPN drops every hour"
    assert mail.from_ is not None and mail.from_.address == "erik@example.org"
    assert mail.text == "The VPN drops every hour."
    assert "HTML_MESSAGE" in mail.headers["x-spam-report"][0]
    assert mail.repairs == ["folding-repaired"]


def test_no_usable_from_falls_back_to_reply_to_and_says_so() -> None:
    mail = read("no_usable_from.eml")
    assert mail.from_ is not None and mail.from_.address == "helpless@example.org"
    assert mail.from_source == "reply-to" and "from-fallback:reply-to" in mail.repairs


@pytest.mark.parametrize(("headers", "address", "source"), [
    (b"From: bob\nSender: bob@example.org\n", "bob@example.org", "sender"),
    (b"From: <>\nReturn-Path: <bob@example.org>\n", "bob@example.org", "return-path"),
    (b"From bob@example.org Mon Feb  3 09:15:00 2025\nFrom: undisclosed\n", "bob@example.org", "mbox"),
    (b"From: Big Bug bb@example.org\n", "bb@example.org", "from"),
    (b"From: john.doe@example.org.\n", "john.doe@example.org", "from"),
    (b'From: "john doe"@example.org\n', '"john doe"@example.org', "from"),
    (b"From: =?utf-8?Q?John=0D=0AX-Evil:_1?= <j@example.org>\n", "j@example.org", "from"),
])
def test_sender_is_found_or_repaired(headers: bytes, address: str, source: str) -> None:
    mail = parse_message(headers + b"Subject: s\n\nx\n")
    assert mail.from_ is not None and mail.from_.address == address
    assert mail.from_source == source
    assert "\r" not in mail.from_.name and "\n" not in mail.from_.name


def test_no_sender_anywhere_is_said() -> None:
    mail = parse_message(b"From: MAILER-DAEMON <>\nSubject: s\n\nx\n")
    assert mail.sender == "" and mail.from_source == "" and "no-sender" in mail.repairs


def test_helpdesk_parse_json_lists_the_repairs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "helpdesk.cli", "parse", str(FIXTURES / "raw_sjis_headers.eml"), "--json"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HELPDESK_DATABASE_URL": "sqlite://"},
    )
    data = json.loads(out.stdout)
    assert data["subject"] == "プリンターが壊れました"
    assert data["from_source"] == "from" and "header-charset-guessed:cp932" in data["repairs"]
    assert data == {**parsed_to_json(read("raw_sjis_headers.eml"), data["verdicts"]), "file": data["file"],
                    "loop_reasons": [], "alert": None}
