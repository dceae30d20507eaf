"""An aiosmtpd server on loopback that keeps every mail it accepts.

With `introspection_url` (tests.servers.oauth) it requires AUTH XOAUTH2 and checks each bearer
token against that RFC 7662 endpoint over HTTP, as Dovecot does: mail from a session that has not
logged in is refused with 530, a token that is not active (expired, revoked) or names another
user with 535 after the XOAUTH2 error challenge (the JSON status that Google and Microsoft send).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class SmtpSink:
    """Accepts mail until told to refuse it.

    Set `reject_rcpt` to an SMTP reply such as "550 no such user" (permanent) or
    "451 try later" (temporary) and every RCPT TO gets that reply; None accepts again.
    """

    def __init__(self, introspection_url: str | None = None, password: tuple[str, str] | None = None) -> None:
        """`password` (user, password): AUTH PLAIN/LOGIN is required and only that pair is accepted."""
        self.host = HOST
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.reject_rcpt: str | None = None
        self.logins: list[str] = []  # users whose XOAUTH2 login was accepted, in order
        self._arrived = threading.Condition()
        if password is not None:
            self._controller = Controller(
                _AuthRequired(self), hostname=self.host, port=self.port,
                authenticator=_Password(*password), auth_require_tls=False,
            )  # fmt: skip
        elif introspection_url is None:
            self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        else:
            self._controller = Controller(
                _OAuthHandler(self, introspection_url),
                hostname=self.host,
                port=self.port,
                auth_require_tls=False,  # loopback; the real servers insist on TLS
            )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, n: int, timeout: float = 10) -> list[ReceivedMail]:
        """The mails received so far, once there are at least `n` of them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"SMTP sink got {len(self.messages)} mail(s), expected {n} within {timeout}s")
                self._arrived.wait(left)
            return list(self.messages)

    def clear(self) -> None:
        with self._arrived:
            self.messages.clear()

    def _received(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self.messages.append(mail)
            self._arrived.notify_all()


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.sink.reject_rcpt is not None:
            return self.sink.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        self.sink._received(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(content),
            )
        )
        return "250 Message accepted for delivery"


class _AuthRequired(_Handler):
    async def handle_RCPT(  # checked here, not with aiosmtpd's auth_required, which warns without TLS
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@dataclass(frozen=True)
class _Password:
    user: str
    password: str

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == self.user.encode() and data.password == self.password.encode()
        return AuthResult(success=ok, handled=False, auth_data=self.user if ok else None)  # aiosmtpd answers


class _OAuthHandler(_AuthRequired):
    def __init__(self, sink: SmtpSink, introspection_url: str) -> None:
        super().__init__(sink)
        self.introspection_url = introspection_url

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        try:
            fields = dict(
                part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part
            )
            user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        except (IndexError, KeyError, ValueError):
            return AuthResult(success=False, handled=False, message="501 5.5.2 malformed XOAUTH2 string")
        answer = await asyncio.to_thread(self._introspect, token)
        if answer.get("active") is True and str(answer.get("username", "")).lower() == user.lower():
            self.sink.logins.append(user)
            return AuthResult(success=True, auth_data=user)
        status = json.dumps({"status": "401", "schemes": "bearer", "scope": "smtp"}).encode()
        await server.challenge_auth(status)  # the client answers with an empty line
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    def _introspect(self, token: str) -> dict[str, object]:
        import requests  # an msal dependency; only these tests need it here

        from tests.servers.oauth import RESOURCE_CLIENT

        reply = requests.post(self.introspection_url, data={"token": token}, auth=RESOURCE_CLIENT, timeout=10)
        return dict(reply.json()) if reply.ok else {"active": False}
