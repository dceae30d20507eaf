"""`helpdesk run` with no mail server configured: the local demo works the whole way round."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path

from tests.e2e.helpers import HELPDESK, helpdesk_env, run, run_json, wait_for


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 60.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"`helpdesk run` never printed {pattern!r}; it printed:\n{''.join(seen)}")


def _console_page(base: str, email: str, password: str, path: str) -> str:
    """Log in through the real login form (with its CSRF token) and fetch one page."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    base = base.rstrip("/")
    login = opener.open(base + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', login
    )
    assert token, "no CSRF token on the login page"
    form = urllib.parse.urlencode({"csrf_token": token.group(1), "email": email, "password": password, "next": ""})
    opener.open(base + "/login", data=form.encode(), timeout=10).read()
    return opener.open(base + path, timeout=10).read().decode()


@contextmanager
def _running(env: dict[str, str], log: Path) -> Iterator[tuple[str, re.Match[str]]]:
    """`helpdesk run` for the block: its console URL and printed demo login; then Ctrl-C, and it must stop cleanly."""
    with open(log, "a") as err:
        proc = subprocess.Popen([HELPDESK, "run"], env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        url = _read_until(proc, r"console:\s+(http://\S+)").group(1)
        _read_until(proc, r"help address:\s+help@example.org")
        login = _read_until(proc, r"console login:\s+(\S+) / (\S+)")
        yield url, login
    except AssertionError as exc:
        exc.add_note("helpdesk run's log:\n" + log.read_text(errors="replace")[-4000:])
        raise
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("`helpdesk run` did not stop on Ctrl-C") from None
    assert proc.returncode == 0
    assert "Helpdesk stopped." in out


def test_run_starts_demo_mail_becomes_ticket_ack_delivered_reply_threads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = helpdesk_env(data, f"sqlite:///{data / 'helpdesk.db'}", HELPDESK_WEB_PORT="0", HELPDESK_POLL_INTERVAL="1")
    log = tmp_path / "run.log"
    with _running(env, log) as (url, login):
        run(env, "demo-mail", "--subject", "Printer on floor 3 is jammed")

        tickets = wait_for(lambda: run_json(env, "tickets", "--json"), what="a ticket")
        assert [t["subject"] for t in tickets] == ["Printer on floor 3 is jammed"]
        number = tickets[0]["number"]

        outbox = data / "demo-mail"
        acks = wait_for(lambda: sorted(outbox.glob("*.eml")) if outbox.exists() else [], what="the acknowledgement")
        ack = message_from_bytes(acks[0].read_bytes(), policy=policy.default)
        assert f"[#{number}]" in ack["Subject"]

        # The user replies: through the demo SMTP server back into the help inbox.
        ports = json.loads((data / "demo.json").read_text())
        import smtplib

        with smtplib.SMTP("127.0.0.1", ports["smtp_port"]) as smtp:
            smtp.sendmail(
                "alice@example.com",
                [ack["Reply-To"]],
                (
                    f"From: alice@example.com\r\nTo: {ack['Reply-To']}\r\nSubject: Re: {ack['Subject']}\r\n"
                    f"Message-ID: <reply-1@example.com>\r\nIn-Reply-To: {ack['Message-ID']}\r\n\r\nStill jammed.\r\n"
                ).encode(),
            )
        detail = wait_for(
            lambda: (d := run_json(env, "ticket", str(number), "--json"))
            and len([m for m in d["messages"] if m["direction"] == "in"]) == 2 and d,
            what="the reply in the ticket",
        )
        assert "Still jammed" in detail["messages"][-1]["text"]
        assert len(run_json(env, "tickets", "--json")) == 1

        # The ticket is visible in the console, with the demo login `make run` printed.
        queue = _console_page(url, login.group(1), login.group(2), "/tickets")
        assert "Printer on floor 3 is jammed" in queue

    # A second run on the same data dir reuses the database: the ticket and the demo login are still there.
    with _running(env, log) as (url, again):
        assert again.groups() == login.groups()
        assert [t["number"] for t in run_json(env, "tickets", "--json")] == [number]
        queue = _console_page(url, again.group(1), again.group(2), "/tickets")
        assert "Printer on floor 3 is jammed" in queue
