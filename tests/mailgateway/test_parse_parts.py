"""The parts of real mail that used to come out wrong: Outlook's winmail.dat, signed and
encrypted mail, calendar invitations, attachments without a usable name, HTML files, the
parts of a bounce, Outlook .msg files. Each mail is built here the way its sender's program
writes it (TNEF by its published format, S/MIME with ``cryptography``)."""

from __future__ import annotations

import base64
import datetime
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpdesk.core.mail import CalendarEvent, Protection
from helpdesk.mailgateway.parse import parse_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"
HEAD = b"From: Anna <anna@example.org>\nTo: help@example.org\nSubject: parts\nMessage-ID: <p@example.org>\nMIME-Version: 1.0\n"


def mixed(*parts: bytes, boundary: bytes = b"B", subtype: bytes = b"mixed", params: bytes = b"") -> bytes:
    body = b"".join(b"--" + boundary + b"\n" + part.rstrip(b"\n") + b"\n" for part in parts)
    return (b"Content-Type: multipart/" + subtype + b"; boundary=" + boundary + params + b"\n\n"
            + body + b"--" + boundary + b"--\n")


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


# --- Outlook TNEF (winmail.dat) --------------------------------------------------------------

def _tnef_attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    # level, attribute id, attribute type, length, data, checksum (sum of the data bytes mod 2^16)
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def tnef(body: bytes, files: list[tuple[bytes, bytes]], codepage: int = 1252) -> bytes:
    """A winmail.dat as Outlook writes one (MS-OXTNEF): message attributes, then one
    attRenddata/attTitle/attData group per attachment."""
    out = struct.pack("<IH", 0x223E9F78, 0x0001)
    out += _tnef_attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += _tnef_attribute(1, 0x9007, 0x0006, struct.pack("<II", codepage, 0))  # attOemCodepage
    out += _tnef_attribute(1, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00")  # attMessageClass
    out += _tnef_attribute(1, 0x800C, 0x0002, body)  # attBody
    for name, data in files:
        out += _tnef_attribute(2, 0x9002, 0x0006, struct.pack("<HIIIHI", 1, 0xFFFFFFFF, 0, 0, 0, 0))
        out += _tnef_attribute(2, 0x8010, 0x0001, name + b"\x00")  # attAttachTitle
        out += _tnef_attribute(2, 0x800F, 0x0006, data)  # attAttachData
    return out


def test_winmail_dat_is_unpacked_into_its_files_and_body() -> None:
    pdf = b"%PDF-1.4\n% printer log\n"
    blob = tnef("Der Drucker im 3. Stock druckt nur leere Seiten.\r\n".encode("cp1252"),
                [(b"Fehlerbericht.pdf", pdf), ("Grüße.txt".encode("cp1252"), b"hello")])
    mail = parse_message(HEAD + mixed(
        b"Content-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=\"winmail.dat\"\n\n" + b64(blob),
    ))
    assert [(p.filename, p.content_type, p.data) for p in mail.attachments] == [
        ("Fehlerbericht.pdf", "application/pdf", pdf), ("Grüße.txt", "text/plain", b"hello"),
    ]
    assert mail.text == "Der Drucker im 3. Stock druckt nur leere Seiten."
    assert "tnef-unpacked" in mail.repairs


def test_winmail_dat_sent_as_octet_stream_is_unpacked_too() -> None:
    blob = tnef(b"", [(b"config.xml", b"<a/>")])
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nSee attachment.\n",
        b"Content-Type: application/octet-stream; name=WINMAIL.DAT\nContent-Transfer-Encoding: base64\n\n" + b64(blob),
    ))
    assert [(p.filename, p.data) for p in mail.attachments] == [("config.xml", b"<a/>")]
    assert mail.text == "See attachment."


def test_unreadable_winmail_dat_is_kept_as_it_came() -> None:
    # An attachment attribute before any attachment began: tnefparse cannot read it
    junk = b"\x78\x9f\x3e\x22\x01\x00" + _tnef_attribute(2, 0x9005, 0x0006, b"\xff" * 30)
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nhi\n",
        b"Content-Type: application/ms-tnef; name=winmail.dat\nContent-Transfer-Encoding: base64\n\n" + b64(junk),
    ))
    assert [(p.filename, p.data) for p in mail.attachments] == [("winmail.dat", junk)]
    assert "tnef-unreadable" in mail.repairs


# --- S/MIME and PGP/MIME ---------------------------------------------------------------------

def _signed(protocol: bytes, signature: bytes) -> bytes:
    return HEAD + mixed(
        b"Content-Type: text/plain; charset=utf-8\n\nPlease reset my VPN token.\n",
        signature,
        subtype=b"signed", params=b'; protocol="' + protocol + b'"; micalg=sha-256',
    )


def test_smime_signed_mail_shows_its_content_and_keeps_the_signature() -> None:
    sig = b"0\x82\x01\x00signature"
    mail = parse_message(_signed(
        b"application/pkcs7-signature",
        b"Content-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\n" + b64(sig),
    ))
    assert mail.text == "Please reset my VPN token."
    assert mail.protection is Protection.SIGNED
    assert [(p.filename, p.data) for p in mail.attachments] == [("smime.p7s", sig)]
    assert "signature-not-verified" in mail.repairs


def test_pgp_signed_mail_shows_its_content_and_keeps_the_signature() -> None:
    sig = b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n"
    mail = parse_message(_signed(b"application/pgp-signature", b"Content-Type: application/pgp-signature\n\n" + sig))
    assert mail.text == "Please reset my VPN token."
    assert mail.protection is Protection.SIGNED
    assert [(p.filename, p.content_type, p.data) for p in mail.attachments] == [
        ("signature.asc", "application/pgp-signature", sig.rstrip(b"\n"))]  # the last line end is the boundary's


def test_smime_encrypted_mail_is_kept_and_said_unreadable() -> None:
    secret = b"0\x80\x06\x09*\x86H\x86\xf7\r\x01\x07\x03\xa0\x80enveloped"
    mail = parse_message(HEAD + b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n"
                         b"Content-Transfer-Encoding: base64\n\n" + b64(secret))
    assert mail.protection is Protection.ENCRYPTED
    assert [(p.filename, p.data) for p in mail.attachments] == [("smime.p7m", secret)]
    assert mail.text == "" and "encrypted-not-read" in mail.repairs


def test_pgp_encrypted_mail_is_kept_and_said_unreadable() -> None:
    armour = b"-----BEGIN PGP MESSAGE-----\n\nhQEMA5\n-----END PGP MESSAGE-----\n"
    mail = parse_message(HEAD + mixed(
        b"Content-Type: application/pgp-encrypted\n\nVersion: 1\n",
        b"Content-Type: application/octet-stream\n\n" + armour,
        subtype=b"encrypted", params=b'; protocol="application/pgp-encrypted"',
    ))
    assert mail.protection is Protection.ENCRYPTED
    assert [(p.filename, p.data) for p in mail.attachments] == [
        ("pgp-version.txt", b"Version: 1"), ("encrypted.asc", armour.rstrip(b"\n"))]
    assert mail.text == ""


def test_inline_pgp_is_recognised() -> None:
    signed = parse_message(HEAD + b"\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n"
                           b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n")
    encrypted = parse_message(HEAD + b"\n-----BEGIN PGP MESSAGE-----\n\nhQEMA5\n-----END PGP MESSAGE-----\n")
    assert (signed.protection, encrypted.protection) == (Protection.SIGNED, Protection.ENCRYPTED)


def _smime_opaque_signed(content: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "anna@example.org")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, []))


def test_smime_opaque_signed_mail_shows_the_content_inside() -> None:
    inner = mixed(b"Content-Type: text/plain\n\nMy laptop will not boot.\n",
                  b"Content-Type: image/png; name=screen.png\nContent-Transfer-Encoding: base64\n\n" + b64(b"\x89PNG1"))
    der = _smime_opaque_signed(inner.replace(b"\n", b"\r\n"))
    mail = parse_message(HEAD + b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\n"
                         b"Content-Transfer-Encoding: base64\n\n" + b64(der))
    assert mail.text == "My laptop will not boot."
    assert mail.protection is Protection.SIGNED
    assert sorted((p.filename, p.data) for p in mail.attachments) == [("screen.png", b"\x89PNG1"), ("smime.p7m", der)]


# --- calendar invitations --------------------------------------------------------------------

INVITE = (
    b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:Microsoft Exchange Server 2010\r\nVERSION:2.0\r\n"
    b"BEGIN:VEVENT\r\nORGANIZER;CN=Anna Berg:mailto:anna@example.org\r\n"
    b"SUMMARY;LANGUAGE=de-DE:Druckerwartung 3. Stock\r\n"
    b"DTSTART;TZID=W. Europe Standard Time:20250310T090000\r\nDTEND;TZID=W. Europe Standard Time:20250310T100000\r\n"
    b"LOCATION:Raum 3.14\r\nUID:abc-123\r\nDTSTAMP:20250301T120000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_calendar_invitation_shows_summary_time_and_organiser_and_keeps_the_ics() -> None:
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nPlease come.\n",
        b"Content-Type: text/calendar; charset=utf-8; method=REQUEST\nContent-Transfer-Encoding: base64\n\n" + b64(INVITE),
        subtype=b"alternative",
    ))
    assert mail.calendar == [CalendarEvent(
        summary="Druckerwartung 3. Stock", start="2025-03-10T09:00:00+01:00",
        end="2025-03-10T10:00:00+01:00", organiser="Anna Berg <anna@example.org>",
        location="Raum 3.14", method="REQUEST",
    )]
    assert [(p.filename, p.content_type, p.data) for p in mail.attachments] == [("invite.ics", "text/calendar", INVITE)]
    assert mail.text == "Please come."


def test_broken_calendar_is_kept_and_said() -> None:
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nx\n",
        b"Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nthis is not ical\n",
    ))
    assert mail.calendar == [] and "calendar-unreadable" in mail.repairs
    assert [p.filename for p in mail.attachments] == ["invite.ics"]


# --- names -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "name"), [
    (b"Content-Type: image/png\nContent-ID: <logo.4f2a@example.org>\n", "logo.4f2a.png"),
    (b"Content-Type: image/jpeg\nContent-ID: <image001.jpg@01D9A2B3.C4D5E6F0>\n", "image001.jpg"),
    (b"Content-Type: application/pdf\n", "attachment.pdf"),
    (b"Content-Type: image/png; name=scan.png\n", "scan.png"),
    (b"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"Pr\xfcfung.pdf\"\n", "Prüfung.pdf"),
    (b"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"Pr\xc3\xbcfung.pdf\"\n", "Prüfung.pdf"),
    (b"Content-Type: application/pdf\nContent-Disposition: attachment; filename*=iso-8859-1''Pr%FCfung.pdf\n", "Prüfung.pdf"),
    (b"Content-Type: application/pdf\nContent-Disposition: attachment;\n filename*0*=utf-8''Pr%C3%BC;\n filename*1=fung.pdf\n",
     "Prüfung.pdf"),
    (b"Content-Type: application/pdf\nContent-Disposition: attachment; filename*=Pr%C3%BCfung.pdf\n", "Prüfung.pdf"),
    (b"Content-Type: application/pdf\nContent-Disposition: attachment; filename*=utf-8'Pr%C3%BCfung.pdf\n", "Prüfung.pdf"),
    (b"Content-Type: application/pdf\nContent-Disposition: attachment; filename*=x-unknown''Pr%C3%BCfung.pdf\n",
     "Prüfung.pdf"),
])
def test_attachment_names(headers: bytes, name: str) -> None:
    mail = parse_message(HEAD + mixed(b"Content-Type: text/plain\n\nsee\n",
                                      headers + b"Content-Transfer-Encoding: base64\n\n" + b64(b"data")))
    assert [(p.filename, p.data) for p in mail.attachments] == [(name, b"data")]


def test_raw_8bit_name_in_the_mail_s_own_charset() -> None:
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain; charset=gb2312\n\n\xc7\xeb\xbf\xb4\xb8\xbd\xbc\xfe\n",
        b"Content-Type: application/pdf; name=\"\xb1\xa8\xb8\xe6.pdf\"\n\n%PDF",
    ))
    assert [p.filename for p in mail.attachments] == ["报告.pdf"]


def test_generated_names_are_said_and_do_not_repeat() -> None:
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nsee\n",
        b"Content-Type: application/pdf\n\n%PDF-1",
        b"Content-Type: application/pdf\n\n%PDF-2",
    ))
    assert [p.filename for p in mail.attachments] == ["attachment.pdf", "attachment-2.pdf"]
    assert "attachment-named:content-type" in mail.repairs


def test_html_file_beside_a_plain_body_is_kept_as_a_file() -> None:
    page = b"<html><body><h1>Error 500</h1></body></html>"
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nThe portal shows this page.\n",
        b"Content-Type: text/html; charset=utf-8\n\n" + page,
        b"Content-Type: text/html; name=saved.html\nContent-Disposition: inline; filename=saved.html\n\n" + page,
    ))
    assert mail.text == "The portal shows this page."
    assert [(p.filename, p.data.strip()) for p in mail.attachments] == [("attachment.html", page), ("saved.html", page)]
    assert mail.html is None


def test_html_alternative_stays_the_body() -> None:
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nhello\n",
        b"Content-Type: text/html\n\n<p>hello</p>\n",
        subtype=b"alternative",
    ))
    assert mail.attachments == [] and "<p>hello</p>" in (mail.html or "")


# --- bounces and Outlook .msg ----------------------------------------------------------------

def test_bounce_keeps_its_delivery_status_and_returned_message() -> None:
    mail = parse_message((FIXTURES / "dsn_bounce.eml").read_bytes())
    names = {p.filename: p for p in mail.attachments}
    assert b"Status: 5.1.1" in names["delivery-status.txt"].data
    assert names["delivery-status.txt"].content_type == "message/delivery-status"
    assert b"[#1234] Your request" in names["returned-headers.txt"].data
    assert mail.delivery_status is not None and "Status: 5.1.1" in mail.delivery_status


def test_outlook_msg_attachment_is_kept_as_a_file() -> None:
    msg = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 4  # an OLE2 compound file
    mail = parse_message(HEAD + mixed(
        b"Content-Type: text/plain\n\nForwarding the original.\n",
        b"Content-Type: application/vnd.ms-outlook\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment\n\n" + b64(msg),
        b"Content-Type: application/vnd.ms-outlook; name=\"Re: VPN.msg\"\nContent-Transfer-Encoding: base64\n\n" + b64(msg),
    ))
    assert [(p.filename, p.data) for p in mail.attachments] == [("message.msg", msg), ("Re: VPN.msg", msg)]


def test_helpdesk_parse_json_says_protection_calendar_and_repairs(tmp_path: Path) -> None:
    signed, invite = tmp_path / "signed.eml", tmp_path / "invite.eml"
    signed.write_bytes(_signed(b"application/pkcs7-signature", b"Content-Type: application/pkcs7-signature\n\nsig"))
    invite.write_bytes(HEAD + b"Content-Type: text/calendar; method=REQUEST\n\n" + INVITE)
    out = subprocess.run(
        [sys.executable, "-m", "helpdesk.cli", "parse", str(signed), str(invite), "--json"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HELPDESK_DATABASE_URL": "sqlite://"},
    )
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert (first["protection"], first["calendar"]) == ("signed", [])
    assert "signature-not-verified" in first["repairs"]
    assert second["protection"] is None and second["calendar"][0]["summary"] == "Druckerwartung 3. Stock"
    assert second["calendar"][0]["organiser"] == "Anna Berg <anna@example.org>"
