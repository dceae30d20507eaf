"""Files attached to a public reply in the console: kept on the ticket, mailed to the requester as far as they fit."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import replace

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import Message, Ticket
from helpdesk.core.settings import Settings, SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.web.conftest import csrf_token, login, make_ticket
from tests.web.test_api import _auth
from helpdesk.web import create_app
from helpdesk.core.models import Role

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40  # binary, ~10 kB
NOTES = "Schritte für den Drucker\r\n1. Aus\r\n2. An\r\n".encode()


def _reply(client: FlaskClient, number: int, text: str, files: list[tuple[bytes, str]]) -> str:
    form = {"csrf_token": csrf_token(client, f"/tickets/{number}"), "text": text,
            "files": [(io.BytesIO(data), name) for data, name in files]}
    return client.post(f"/tickets/{number}/reply", data=form, content_type="multipart/form-data",
                       follow_redirects=True).get_data(as_text=True)


def _reply_row(factory: sessionmaker[Session], number: int) -> tuple[str, list[tuple[str, int, str | None]]]:
    with factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        reply: Message = ticket.messages[-1]
        return reply.text or "", [(a.filename, a.size, a.sha256) for a in reply.attachments]


def test_files_go_out_with_the_reply_and_stay_downloadable(as_agent: FlaskClient, factory, smtp_sink) -> None:
    number = make_ticket(factory, "Printer prints garbage", requester="carol@example.com").number
    page = _reply(as_agent, number, "The driver and the steps are attached.",
                  [(PDF, "driver-notes.pdf"), (NOTES, "steps.txt")])
    assert "Reply sent." in page and "not mailed" not in page
    text, kept = _reply_row(factory, number)
    assert text == "The driver and the steps are attached."
    assert [(name, size) for name, size, _ in kept] == [("driver-notes.pdf", len(PDF)), ("steps.txt", len(NOTES))]

    # On the ticket page, each file is a download of the very bytes that were uploaded.
    links = re.findall(r'href="(/tickets/\d+/attachments/\d+)"[^>]*download', as_agent.get(f"/tickets/{number}").get_data(as_text=True))
    assert len(links) == 2
    assert [as_agent.get(link).data for link in links] == [PDF, NOTES]

    # And the requester gets them, attached to the threaded reply, through a real SMTP server.
    send_once(factory, SmtpSettings(host=smtp_sink.host, port=smtp_sink.port))
    [mail] = [m.message for m in smtp_sink.wait_for(1) if m.rcpt_tos == ["carol@example.com"]]
    assert f"[#{number}]" in mail["Subject"]
    got = {p.get_filename(): p.get_payload(decode=True) for p in mail.iter_attachments()}
    assert {name: hashlib.sha256(data).hexdigest() for name, data in got.items()} == {
        "driver-notes.pdf": hashlib.sha256(PDF).hexdigest(), "steps.txt": hashlib.sha256(NOTES).hexdigest(),
    }


def test_a_file_over_the_mail_limit_is_kept_on_the_ticket_and_the_agent_told(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    small = replace(settings, max_message_bytes=200 * 1024)
    client = login(create_app(small, factory, testing=True).test_client(), Role.AGENT)
    number = make_ticket(factory, "Need the installer").number
    big = bytes(150 * 1024)
    page = _reply(client, number, "Here it is.", [(big, "installer.bin"), (NOTES, "steps.txt")])
    assert "not mailed, over the mail size limit: installer.bin" in page
    _, kept = _reply_row(factory, number)
    assert [(name, size) for name, size, _ in kept] == [("installer.bin", len(big)), ("steps.txt", len(NOTES))]


def test_a_reply_without_files_is_as_before(as_agent: FlaskClient, factory) -> None:
    number = make_ticket(factory, "VPN drops").number
    assert "Reply sent." in _reply(as_agent, number, "Please try again now.", [])
    text, kept = _reply_row(factory, number)
    assert text == "Please try again now." and kept == []


def test_only_a_signed_in_user_may_send_a_large_body(settings: Settings, factory, client: FlaskClient) -> None:
    number = make_ticket(factory, "Anything").number
    body = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n\r\n" + bytes(3 * 1024 * 1024)
    response = client.post(f"/tickets/{number}/reply", data=body + b"\r\n--x--\r\n",
                           content_type="multipart/form-data; boundary=x")
    assert response.status_code == 413  # anonymous: the small default limit, before anything else reads the body


def test_upload_names_lose_paths_and_control_characters() -> None:
    from helpdesk.web.tickets import upload_name as _upload_name

    assert _upload_name("C:\\Users\\gina\\steps.txt") == "steps.txt"
    assert _upload_name("../../etc/passwd") == "passwd"
    assert _upload_name("report\r\nBcc: x.pdf") == "report Bcc: x.pdf"
    assert _upload_name("") == "attachment" and _upload_name(None) == "attachment"
    assert len(_upload_name("a" * 1000)) == 200


def test_a_signed_in_agent_may_upload_more_than_the_small_default(as_agent: FlaskClient, factory) -> None:
    number = make_ticket(factory, "Logs please").number
    logs = bytes(range(256)) * (12 * 1024)  # 3 MB: over the 2 MB every other form gets
    assert "Reply sent." in _reply(as_agent, number, "Full logs attached.", [(logs, "logs.bin")])
    _, kept = _reply_row(factory, number)
    assert [(name, size) for name, size, _ in kept] == [("logs.bin", len(logs))]


def test_api_reply_carries_base64_files_and_says_which_were_too_big(settings: Settings, factory) -> None:
    import base64

    small = replace(settings, max_message_bytes=200 * 1024)
    client = create_app(small, factory, testing=True).test_client()
    number = make_ticket(factory, "Need the driver", requester="carol@example.com").number
    big = bytes(150 * 1024)
    body = {"text": "Attached.", "attachments": [
        {"filename": "driver-notes.pdf", "content_type": "application/pdf", "content_base64": base64.b64encode(PDF).decode()},
        {"filename": "../../installer.bin", "content_base64": base64.b64encode(big).decode()},
    ]}
    response = client.post(f"/api/tickets/{number}/reply", json=body, headers=_auth(factory, Role.AGENT))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.json["not_mailed"] == ["installer.bin"] and response.json["text"] == "Attached."
    _, kept = _reply_row(factory, number)
    assert [(name, size) for name, size, _ in kept] == [("driver-notes.pdf", len(PDF)), ("installer.bin", len(big))]


def test_api_reply_with_files_that_are_not_base64_is_a_json_400(app, factory) -> None:
    client = app.test_client()
    number = make_ticket(factory, "Anything").number
    for attachments in ([{"filename": "x.txt", "content_base64": "not base64!"}], "x", [{"filename": "x.txt"}]):
        response = client.post(f"/api/tickets/{number}/reply", json={"text": "t", "attachments": attachments},
                               headers=_auth(factory, Role.AGENT))
        assert response.status_code == 400 and "error" in response.json, response.get_data(as_text=True)
    _, kept = _reply_row(factory, number)
    assert kept == []  # nothing stored by a refused reply


def test_api_reply_may_carry_more_than_the_small_default_body(app, factory) -> None:
    import base64

    number = make_ticket(factory, "Logs please").number
    logs = bytes(range(256)) * (8 * 1024)  # 2 MB, 2.7 MB in base64: over the 2 MB every other request gets
    body = {"text": "Logs.", "attachments": [{"filename": "logs.bin", "content_base64": base64.b64encode(logs).decode()}]}
    response = app.test_client().post(f"/api/tickets/{number}/reply", json=body, headers=_auth(factory, Role.AGENT))
    assert response.status_code == 201, response.status_code
    _, kept = _reply_row(factory, number)
    assert [(name, size) for name, size, _ in kept] == [("logs.bin", len(logs))]
