"""parse_message on hand-written fixtures and on hostile mail generated here."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest

from helpdesk.mailgateway.parse import UnreadableMail, parse_message, parsed_to_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"
HEAD = b"From: a@example.org\nTo: help@example.org\nSubject: hostile\nMessage-ID: <h@example.org>\n"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_html_only_mail_gets_clean_text_and_sanitised_html() -> None:
    parsed = parse_message(fixture("html_only.eml"))
    assert parsed.from_ is not None and parsed.from_.address == "printer.fan@example.org"
    assert parsed.from_.name == "Printer Fan"
    assert parsed.subject == "Drucker stört"
    assert parsed.date is not None and parsed.date.isoformat() == "2025-02-03T09:15:00+01:00"
    assert "The printer on floor 3 is jammed again." in parsed.text
    assert "alert" not in parsed.text and "background" not in parsed.text
    html = parsed.html or ""
    assert "<b>jammed</b>" in html
    for unsafe in ("<script", "onload", "javascript:", "data:", "<style", "steal"):
        assert unsafe not in html, unsafe
    assert 'href="https://intranet.example.org/printers"' in html
    assert parsed.reply_text == "The printer on floor 3 is jammed again.\n\nclick list"


def test_forward_inline_image_and_rfc2231_attachment() -> None:
    parsed = parse_message(fixture("forward_and_inline_image.eml"))
    by_name = {part.filename: part for part in parsed.attachments}
    logo = next(p for p in parsed.attachments if p.content_id == "logo@example.org")
    assert logo.inline and logo.content_type == "image/gif" and logo.data.startswith(b"GIF89a")
    assert 'src="cid:logo@example.org"' in (parsed.html or "")
    pdf = by_name["Prüfbericht Q1.pdf"]  # RFC 2231 name, "base64 " with a trailing space
    assert pdf.data == b"%PDF-1.4\n"
    forwarded = by_name["ALERT vpn-gw1 down.eml"]
    assert forwarded.content_type == "message/rfc822" and b"vpn-gw1 is DOWN" in forwarded.data
    assert parsed.embedded_message_ids == ["alert-42@monitor.example.org"]
    assert parsed.attached_headers[0]["subject"] == ["ALERT vpn-gw1 down"]
    assert parsed.text == "See the forwarded alert."


def test_delivery_status_notification_names_the_bounced_mail() -> None:
    parsed = parse_message(fixture("dsn_bounce.eml"))
    assert parsed.content_type == "multipart/report"
    assert parsed.report_type == "delivery-status"
    assert parsed.delivery_status is not None and "Status: 5.1.1" in parsed.delivery_status
    assert parsed.embedded_message_ids == ["ticket-1234-abc@helpdesk.example.org"]
    assert parsed.attached_headers[0]["subject"] == ["[#1234] Your request"]
    assert parsed.from_ is not None and parsed.from_.address == "mailer-daemon@mx.example.net"
    assert [p.filename for p in parsed.attachments] == ["delivery-status.txt", "returned-headers.txt"]


def test_feedback_report_is_read() -> None:
    parsed = parse_message(fixture("arf_report.eml"))
    assert parsed.report_type == "feedback-report"
    assert parsed.feedback_report is not None and "Feedback-Type: abuse" in parsed.feedback_report
    assert parsed.embedded_message_ids == ["ticket-77-x@helpdesk.example.org"]
    assert parsed.text == "This is an abuse report."


def test_reply_threading_headers_and_quote_stripping() -> None:
    parsed = parse_message(fixture("reply_with_quote.eml"))
    assert parsed.message_id == "reply-1@example.org"
    assert parsed.in_reply_to == "ticket-1234-abc@helpdesk.example.org"
    assert parsed.references == ["ticket-1234-root@helpdesk.example.org", "ticket-1234-abc@helpdesk.example.org"]
    assert parsed.reply_text == "It works again, thanks!"
    assert "> Please restart the client." in parsed.text
    assert parsed.header("To") == "help+1234-tok@example.org"


def test_json_shape_is_the_documented_contract() -> None:
    parsed = parse_message(fixture("forward_and_inline_image.eml"))
    verdicts = {"auto_reply": False, "bounce": False, "feedback_report": False, "mailing_list": False}
    out = parsed_to_json(parsed, verdicts)
    assert list(out) == [
        "from", "to", "cc", "reply_to", "subject", "date", "message_id", "in_reply_to",
        "references", "text", "reply_text", "attachments", "verdicts", "from_source", "repairs",
        "protection", "calendar",
    ]
    # a well-formed mail needs no repair; its unnamed inline image is named after its Content-ID
    assert (out["from_source"], out["repairs"]) == ("from", ["attachment-named:content-id"])
    assert out["from"] == {"address": "anna@example.org", "name": "Anna"}
    assert out["to"] == [{"address": "help@example.org", "name": ""}]
    assert out["date"] is None and out["verdicts"] == verdicts
    pdf = next(a for a in out["attachments"] if a["filename"] == "Prüfbericht Q1.pdf")
    assert pdf == {
        "filename": "Prüfbericht Q1.pdf",
        "content_type": "application/pdf",
        "size": 9,
        "sha256": hashlib.sha256(b"%PDF-1.4\n").hexdigest(),
    }
    json.dumps(out)


def test_lying_and_unknown_charsets_fall_back() -> None:
    raw = (
        b"From: =?x-no-such-charset?q?J=F6rg?= <j@example.org>\nSubject: caf\xc3\xa9 \xe9t\xe9\n"
        b"Content-Type: text/plain; charset=us-ascii\n\nGr\xc3\xbc\xc3\x9fe, caf\xe9\n"
    )
    parsed = parse_message(raw)
    assert parsed.from_ is not None and parsed.from_.name == "Jörg"
    # UTF-8 with windows-1252 pasted in: each read as what it is, never an error
    assert parsed.subject == "café été"
    assert parsed.text == "Grüße, café"
    assert any("charset" in d for d in parsed.defects)
    raw_utf8 = b"Subject: caf\xc3\xa9\nContent-Type: text/plain; charset=bogus\n\nGr\xc3\xbc\xc3\x9fe\n"
    parsed = parse_message(raw_utf8)
    assert (parsed.subject, parsed.text) == ("café", "Grüße")


def test_iso_2022_jp_with_bad_bytes_is_read() -> None:
    body = "お世話になります".encode("iso2022_jp") + b"\x1b$B\xff\xfe\x1b(B"
    subject = base64.b64encode("件名".encode("iso2022_jp")).decode()
    raw = (
        f"From: jp@example.org\nSubject: =?ISO-2022-JP?B?{subject}?=\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\n\n"
    ).encode() + body
    parsed = parse_message(raw)
    assert parsed.subject == "件名"
    assert parsed.text.startswith("お世話になります")


@pytest.mark.parametrize("ending", [b"\r", b"\r\n", b"mixed"])
def test_cr_only_crlf_and_mixed_line_endings(ending: bytes) -> None:
    lines = [b"From: x@example.org", b"Subject: endings", b"Content-Type: text/plain", b"", b"one", b"two"]
    if ending == b"mixed":
        raw = b"\r".join(lines[:2]) + b"\r\n" + b"\n".join(lines[2:]) + b"\r\n"
    else:
        raw = ending.join(lines) + ending
    parsed = parse_message(raw)
    assert parsed.subject == "endings"
    assert parsed.text == "one\ntwo\n".strip("\n") or parsed.text == "one\ntwo\n"


def test_uuencoded_file_in_the_body_becomes_an_attachment() -> None:
    import binascii

    payload = bytes(range(200))
    uu = b"".join(binascii.b2a_uu(payload[i : i + 45]) for i in range(0, len(payload), 45))
    raw = HEAD + b"\nHere is the log.\n\nbegin 644 log.bin\n" + uu + b"`\nend\n\nBye\n"
    parsed = parse_message(raw)
    assert [(p.filename, p.data) for p in parsed.attachments] == [("log.bin", payload)]
    assert "begin 644" not in parsed.text and "Here is the log." in parsed.text and "Bye" in parsed.text


def test_attachments_over_the_limit_are_kept_as_empty_parts_with_a_defect() -> None:
    blob = base64.encodebytes(b"x" * 3000)
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nsee files\n"
        b"--B\nContent-Type: application/octet-stream; name=small.bin\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"y" * 100)
        + b"--B\nContent-Type: application/octet-stream; name=big.bin\nContent-Transfer-Encoding: base64\n\n"
        + blob
        + b"--B--\n"
    )
    parsed = parse_message(raw, max_attachment_bytes=1000)
    sizes = {p.filename: len(p.data) for p in parsed.attachments}
    assert sizes == {"small.bin": 100, "big.bin": 0}
    assert any("big.bin" in d and "limit" in d for d in parsed.defects)
    assert parsed.text == "see files"


@pytest.mark.parametrize("raw", [b"", b"   \n\n", b"\x00\x00"], ids=["empty", "blank", "nul"])
def test_nothing_readable_raises_unreadable_mail(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
    except UnreadableMail as exc:
        assert str(exc)
    else:  # NUL bytes are a (strange) body: reading them is fine too
        assert parsed.from_ is None


def _timed(raw: bytes) -> tuple[float, object]:
    started = time.monotonic()
    try:
        result: object = parse_message(raw)
    except UnreadableMail as exc:
        result = exc
    return time.monotonic() - started, result


def test_fifty_megabyte_mail_is_read_in_bounded_time() -> None:
    big = base64.encodebytes(b"\x00\x01\x02" * (13 * 1024 * 1024))  # ~52 MB encoded
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nhuge\n"
        b"--B\nContent-Type: application/octet-stream; name=x.bin\nContent-Transfer-Encoding: base64\n\n"
        + big
        + b"--B--\n"
    )
    seconds, parsed = _timed(raw)
    assert seconds < 20
    assert not isinstance(parsed, UnreadableMail)
    assert parsed.text == "huge"  # type: ignore[union-attr]
    assert [len(p.data) for p in parsed.attachments] == [0]  # type: ignore[union-attr]


def test_mime_bomb_of_thousands_of_parts_is_cut_off() -> None:
    parts = b"".join(b"--B\nContent-Type: image/png; name=p%d.png\n\nxx\n" % i for i in range(20000))
    seconds, parsed = _timed(HEAD + b"Content-Type: multipart/mixed; boundary=B\n\n" + parts + b"--B--\n")
    assert seconds < 10
    assert not isinstance(parsed, UnreadableMail)
    assert 0 < len(parsed.attachments) <= 2000  # type: ignore[union-attr]
    assert any("MIME parts" in d for d in parsed.defects)  # type: ignore[union-attr]


@pytest.mark.parametrize("depth", [100, 1000])
def test_deep_nesting_is_read_or_headers_kept(depth: int) -> None:
    body = b"Content-Type: text/plain\n\ndeep\n"
    for i in range(depth):
        body = b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) + body + b"\n--b%d--\n" % i
    seconds, parsed = _timed(HEAD + body)
    assert seconds < 10
    assert not isinstance(parsed, UnreadableMail)
    assert parsed.subject == "hostile"  # type: ignore[union-attr]
    if depth == 100:
        assert parsed.text == "deep"  # type: ignore[union-attr]


def test_messages_forwarded_inside_each_other_100_deep() -> None:
    body = b"Content-Type: text/plain\n\ninnermost\n"
    for i in range(100):
        body = b"Content-Type: message/rfc822\n\nSubject: level %d\nMessage-ID: <l%d@x>\n" % (i, i) + body
    seconds, parsed = _timed(HEAD + body)
    assert seconds < 10
    assert not isinstance(parsed, UnreadableMail)
    assert len(parsed.attachments) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("header", ["long-line", "folded", "addresses", "encoded-words"])
def test_one_megabyte_header(header: str) -> None:
    values = {
        "long-line": b"X-Big: " + b"a" * (1024 * 1024),
        "folded": b"X-Big: " + b"a\n " * (300 * 1024),
        "addresses": b"Cc: " + b",".join(b"u%d@example.org" for i in range(70000)),
        "encoded-words": b"Subject: " + b"=?utf-8?q?=C3=A4?= " * 60000,
    }
    raw = b"From: a@example.org\n" + values[header] + b"\nContent-Type: text/plain\n\nbody\n"
    seconds, parsed = _timed(raw)
    assert seconds < 10
    assert not isinstance(parsed, UnreadableMail)
    assert parsed.text == "body"  # type: ignore[union-attr]


def test_binary_noise_without_headers_is_refused_but_a_headerless_text_is_read() -> None:
    import random

    noise = random.Random(7).randbytes(2000)
    with pytest.raises(UnreadableMail, match="binary"):
        parse_message(noise)
    assert parse_message(b"Just the body of a note,\r\npiped in by some tool.\r\n").text.startswith("Just the body")


def test_nul_characters_are_replaced_so_every_database_stores_the_mail() -> None:
    mail = parse_message(b"From: Al\x00ice <alice@example.com>\r\nSubject: nul\x00subj\r\n\r\nhello\x00world\r\n")
    assert mail.subject == "nul\ufffdsubj" and mail.text.startswith("hello\ufffdworld")
    assert "\x00" not in (mail.from_.name if mail.from_ else "")
    assert all("\x00" not in v for values in mail.headers.values() for v in values)
