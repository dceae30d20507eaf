"""A shared mailbox read and answered through Microsoft Graph for real: `helpdesk poll` and `helpdesk send` against
the local Graph stand-in, with tokens msal fetches from the local HTTPS authorization server. The poller is
killed with SIGKILL between storing a mail and moving it; revoked consent shows in `helpdesk mailboxes` while
mail waits on the server, and once consent is back the mail comes in, none lost and none twice."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.config import load
from helpdesk.core.models import Outbox
from helpdesk.wiring import build
from tests.e2e.helpers import HELPDESK, helpdesk_env, run, run_json, wait_for
from tests.servers.graph import MicrosoftStandIns, microsoft_stand_ins

SHARED = "servicedesk@contoso.example"
SECRET = "graph-e2e-secret-never-logged"
ADMIN = "root@contoso.example"


def _mail(n: int) -> bytes:
    return (
        f"From: user{n}@example.com\r\nTo: {SHARED}\r\nSubject: VPN {n} drops every hour\r\n"
        f"Message-ID: <graph-e2e-{n}@example.com>\r\n\r\nPlease help.\r\n"
    ).encode()


@pytest.fixture
def ms() -> Iterator[MicrosoftStandIns]:
    with microsoft_stand_ins() as found:
        found.graph.add_mailbox(SHARED)
        yield found


def test_poll_and_send_through_graph_survive_a_kill_a_revoked_consent_and_token_expiry(
    ms: MicrosoftStandIns, tmp_path: Path
) -> None:
    client = ms.oauth.add_client("graph-e2e", SECRET, username=SHARED)  # the app, scoped to the shared mailbox
    ms.oauth.expires_in = 4  # tokens run out during the run
    config = tmp_path / "helpdesk.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "servicedesk"\ntransport = "graph"\nuser = "{SHARED}"\naddress = "{SHARED}"\n'
        f'auth = "oauth2"\noauth_provider = "microsoft"\noauth_authority = "{ms.oauth.authority("contoso")}"\n'
        f'oauth_client_id = "graph-e2e"\noauth_client_secret = "{SECRET}"\n'
    )
    env = helpdesk_env(
        tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.db'}", HELPDESK_CONFIG=str(config),
        HELPDESK_ADDRESS=SHARED, HELPDESK_GRAPH_URL=ms.graph.url, REQUESTS_CA_BUNDLE=str(ms.cert),
        HELPDESK_LEASE_SECONDS="3", HELPDESK_POLL_INTERVAL="0.5",
    )  # fmt: skip
    run(env, "init")
    run(env, "user", "add", ADMIN, "--role", "admin", "--password-stdin", input=b"admin-password-long-enough\n")

    def tickets() -> int:
        return len(run_json(env, "tickets", "--json"))

    def status() -> dict[str, Any]:
        [row] = run_json(env, "mailboxes", "--json")
        return dict(row)

    log = tmp_path / "poll.log"

    def poll() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([HELPDESK, "poll"], env=env, stdout=out, stderr=out)

    # Killed while the move is on the wire: the mail is stored, still in the Inbox.
    ms.graph.hold_moves()
    ms.graph.deliver(SHARED, _mail(1))
    first = poll()
    try:
        assert ms.graph.move_attempted.wait(60), log.read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    ms.graph.release_moves()
    assert len(ms.graph.messages(SHARED, "Inbox")) == 1

    second = poll()
    try:
        wait_for(lambda: tickets() == 1 and not ms.graph.messages(SHARED, "Inbox"), 60, "the stored mail moved")
        assert len(ms.graph.messages(SHARED, "Processed")) == 1
        assert status()["last_success"] and not status()["failing"]

        # Consent withdrawn and the secret no longer accepted: the failure shows; mail waits on the server.
        client.disabled = True
        ms.oauth.revoke_client("graph-e2e")
        ms.graph.deliver(SHARED, _mail(2))
        failed = wait_for(lambda: (s := status())["failing"] and s, 60, "the failure in `helpdesk mailboxes`")
        assert "invalid_client" in failed["last_error"]
        assert run(env, "mailboxes", check=False).returncode == 1
        assert tickets() == 1 and len(ms.graph.messages(SHARED, "Inbox")) == 1

        client.disabled = False  # consent given again: the mail that waited comes in
        wait_for(lambda: tickets() == 2 and not ms.graph.messages(SHARED, "Inbox"), 90, "the mail that waited")
        assert not status()["failing"]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert tickets() == 2 and len(ms.graph.messages(SHARED, "Processed")) == 2
    assert len(ms.oauth.issued("graph-e2e")) >= 2

    # The acknowledgements (and the admin's alert) go out through sendMail as the outbox holds them.
    out = run(env, "send", "--once", check=False)
    app = build(load(env))
    try:
        with app.factory() as session:
            rows = list(session.scalars(select(Outbox)))
    finally:
        app.engine.dispose()
    assert out.returncode == 0, out.stderr.decode()
    assert sorted(s.raw for s in ms.graph.sent) == sorted(r.raw for r in rows)
    assert {r.status.value for r in rows} == {"sent"} and len(rows) >= 2
    text = log.read_text()
    assert SECRET not in text and not any(t.access_token in text for t in ms.oauth.issued("graph-e2e"))
