"""A mailbox read with XOAUTH2 for real: `helpdesk poll` against a Dovecot that checks every token at the
local authorization server. A token that expires mid-run is replaced and mail keeps flowing; revoked
credentials show in `helpdesk mailboxes`, in the admins' mail and as a console banner; once the
credentials work again the mail that waited on the server comes in, none lost."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from helpdesk.core.mailauth import ALERT_PURPOSE, LoginStatus, statuses
from helpdesk.core.models import Outbox, Ticket
from helpdesk.config import load
from helpdesk.wiring import App, build
from tests.e2e.helpers import HELPDESK, helpdesk_env, run, run_json, wait_for
from tests.servers.imap import DovecotServer
from tests.servers.oauth import OAuthServer
import tests.web.conftest  # noqa: F401 - first: it and tests.web.browser import each other
from tests.web.browser import CHROMIUM_ARGS, LiveServer
from helpdesk.web import create_app

ADMIN, ADMIN_PASSWORD = "root@example.org", "admin-password-long-enough"
SECRET = "client-secret-never-logged"


def _mail(n: int) -> bytes:
    return (
        f"From: user{n}@example.com\r\nTo: help@example.org\r\nSubject: Printer {n} is jammed\r\n"
        f"Message-ID: <oauth-e2e-{n}@example.com>\r\n\r\nPlease help.\r\n"
    ).encode()


@contextmanager
def _console(desk: App, chromium: str) -> Iterator[Callable[[], str]]:
    """An admin signed in to the console in a real browser (started once); each call shows the queue page
    afresh and gives the banner on it."""
    from playwright.sync_api import sync_playwright

    server = LiveServer(create_app(desk.settings, desk.factory))
    server.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{server.url}/login")
            page.fill("input[name=email]", ADMIN)
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("header.top nav")
            queue = page.url

            def banner() -> str:
                page.goto(queue)
                page.wait_for_selector("header.top nav")
                return "\n".join(page.locator(".login-failing").all_inner_texts())

            yield banner
            browser.close()
    finally:
        server.stop()


def test_poll_with_oauth2_refreshes_reports_revocation_and_resumes(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer, tmp_path: Path, chromium_executable: str
) -> None:
    client = oauth_server.add_client("e2e-app", SECRET, username=oauth_dovecot.user)
    oauth_server.expires_in = 4
    env = helpdesk_env(
        tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.db'}", oauth_dovecot,
        HELPDESK_IMAP_PASSWORD="", HELPDESK_IMAP_AUTH="oauth2", HELPDESK_IMAP_OAUTH_PROVIDER="generic",
        HELPDESK_IMAP_OAUTH_TOKEN_URL=oauth_server.token_url, HELPDESK_IMAP_OAUTH_CLIENT_ID="e2e-app",
        HELPDESK_IMAP_OAUTH_CLIENT_SECRET=SECRET,
        HELPDESK_LEASE_SECONDS="6",  # IDLE is re-issued every 2 s, so SIGTERM stops the poller that soon
    )  # fmt: skip
    run(env, "init")
    run(env, "user", "add", ADMIN, "--role", "admin", "--password-stdin", input=f"{ADMIN_PASSWORD}\n".encode())

    # The waits read the database the poller writes (a `helpdesk` run costs ~1 s); the CLI's own
    # listings are checked once at each step below.
    desk = build(load(env))

    def tickets() -> int:
        with desk.factory() as session:
            return session.scalar(select(func.count()).select_from(Ticket)) or 0

    def login() -> LoginStatus | None:
        with desk.factory() as session:
            return next(iter(statuses(session).values()), None)

    def status() -> dict[str, Any]:
        [row] = run_json(env, "mailboxes", "--json")
        return dict(row)

    log = tmp_path / "poll.log"
    with log.open("wb") as out:
        poll = subprocess.Popen([HELPDESK, "poll"], env=env, stdout=out, stderr=out)
    try:
        oauth_dovecot.append(_mail(1))
        wait_for(lambda: tickets() == 1, 40, "the first mail's ticket")
        wait_for(lambda: (s := login()) and s.last_success_at, 20, "the login's success recorded")
        first = status()
        assert first["auth"] == "oauth2" and first["last_success"] and not first["failing"]

        # The token runs out while the poller is connected; a dropped connection needs a new login.
        time.sleep(4.5)
        oauth_dovecot.restart()
        oauth_dovecot.append(_mail(2))
        wait_for(lambda: tickets() == 2, 40, "the second mail's ticket after the token expired")
        assert len(oauth_server.issued("e2e-app")) >= 2

        # Consent withdrawn and the secret no longer accepted: the login fails and says so.
        client.disabled = True
        oauth_server.revoke_client("e2e-app")
        oauth_dovecot.restart()
        oauth_dovecot.append(_mail(3))
        wait_for(lambda: (s := login()) and s.failing, 40, "the failure recorded")
        failed = status()
        assert failed["failing"] and "invalid_client" in failed["last_error"]
        assert run(env, "mailboxes", check=False).returncode == 1
        with _console(desk, chromium_executable) as banner:
            assert "invalid_client" in banner()
            with desk.factory() as session:
                alerts = list(session.scalars(select(Outbox).where(Outbox.purpose == ALERT_PURPOSE)))
            assert [a.recipients for a in alerts] == [[ADMIN]]
            assert tickets() == 2  # mail 3 waits on the server

            # The credentials work again: the poller's next try logs in and the waiting mail comes in.
            client.disabled = False
            wait_for(lambda: tickets() == 3, 60, "the mail that waited on the server")
            assert len(run_json(env, "tickets", "--json")) == 3
            assert not status()["failing"]
            assert banner() == ""
    finally:
        poll.send_signal(signal.SIGTERM)
        poll.wait(20)
        desk.engine.dispose()
    text = log.read_text()
    assert text.count("OAuth2 token refresh failed") == 1, text
    assert SECRET not in text and not any(t.access_token in text for t in oauth_server.issued("e2e-app"))
    assert sorted(oauth_dovecot.uids("INBOX") + oauth_dovecot.uids("Processed")) and oauth_dovecot.uids("INBOX") == []
