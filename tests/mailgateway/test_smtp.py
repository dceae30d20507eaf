"""Sending the outbox to a real aiosmtpd that wants a login and drops connections."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from helpdesk.core.models import OutboxStatus
from helpdesk.core.outbox import RetryPolicy
from helpdesk.core.settings import SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import make_desk, mail
from tests.servers import free_port
from tests.servers.smtp import HOST, ReceivedMail

USER, PASSWORD = "helpdesk", "s3cret"
# Plain-text AUTH is what this loopback test server is for.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
AT_ONCE = RetryPolicy(first_delay=timedelta(0))  # a temporary failure is due again at once


class _Sink:
    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.logins = 0

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(), PASSWORD.encode()
        )
        self.logins += ok
        return AuthResult(success=ok)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content)))
        return "250 OK"


class _DropAfterFirstMail(SMTP):
    """Accepts one mail per connection, then hangs up, as servers limiting mails per session do."""

    async def smtp_DATA(self, arg: str) -> None:
        await super().smtp_DATA(arg)
        if self.transport is not None:
            self.transport.close()


class _AuthController(Controller):
    def factory(self) -> SMTP:
        return _DropAfterFirstMail(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def auth_sink() -> Iterator[tuple[_Sink, int]]:
    sink = _Sink()
    port = free_port()
    controller = _AuthController(
        sink, hostname=HOST, port=port, authenticator=sink.authenticate, auth_required=True, auth_require_tls=False
    )
    controller.start()
    yield sink, port
    controller.stop()


def test_sender_logs_in_again_after_the_server_hangs_up(sqlite_session_factory, tmp_path, auth_sink) -> None:
    sink, port = auth_sink
    desk = make_desk(sqlite_session_factory, tmp_path)
    for n in range(3):
        desk.deliver(mail(f"user{n}@example.com", f"Problem {n}", "help"))
    first, second, third = desk.outbox("acknowledgement")
    settings = SmtpSettings(host=HOST, port=port, user=USER, password=PASSWORD)
    # The first mail goes out, the second finds the connection gone, the third goes out over a new one.
    assert send_once(desk.factory, settings, policy=AT_ONCE) == (2, 1)
    by_id = {row.id: row for row in desk.outbox("acknowledgement")}
    assert by_id[first.id].status is OutboxStatus.SENT
    assert by_id[second.id].status is OutboxStatus.PENDING
    assert "Disconnected" in (by_id[second.id].last_error or "")
    assert by_id[third.id].status is OutboxStatus.SENT
    assert sink.logins == 2
    # The one left behind goes out in the next round.
    assert send_once(desk.factory, settings, policy=AT_ONCE) == (1, 0)
    received = [m.message["Message-ID"].strip("<>") for m in sink.messages]
    assert sorted(received) == sorted([first.message_id, second.message_id, third.message_id])


def test_authentication_required_is_a_temporary_failure(sqlite_session_factory, tmp_path, auth_sink) -> None:
    _, port = auth_sink
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.deliver(mail())
    # No login (say the password was being changed): the mail waits for a retry, it is not given up.
    assert send_once(desk.factory, SmtpSettings(host=HOST, port=port)) == (0, 1)
    [row] = desk.outbox("acknowledgement")
    assert row.status is OutboxStatus.PENDING and "530" in (row.last_error or "")
