"""`helpdesk web --workers 2` on PostgreSQL, for real: two console processes behind one address that
hold login throttling and logout together, and /readyz and /metrics telling the database's truth."""

from __future__ import annotations

import html
import http.client
import os
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import HELPDESK, helpdesk_env, run, wait_for
from tests.e2e.mails import make_mail
from tests.servers import free_port, terminate, wait_for_port
from tests.servers.postgres import PostgresCluster

ADMIN, PASSWORD = "admin@example.org", "correct horse battery"
COOKIE = "helpdesk_session"
WORKER = "X-Helpdesk-Worker"
TRIES = 200  # requests to find both workers: each is a new connection, and either may accept it
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Answer:
    status: int
    worker: int
    location: str
    cookie: str | None
    body: str


@dataclass
class Console:
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def ask(self, method: str, path: str, *, cookie: str | None = None, form: dict[str, str] | None = None) -> Answer:
        """One request on a new connection (so that either worker may take it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Connection": "close"}
        if cookie:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            jar = SimpleCookie()
            for header in response.headers.get_all("Set-Cookie") or []:
                jar.load(header)
            return Answer(response.status, int(response.headers[WORKER]), response.headers.get("Location", ""),
                          jar[COOKIE].value if COOKIE in jar else None, text)
        finally:
            conn.close()

    def from_both(self, ask: Callable[[], Answer]) -> dict[int, list[Answer]]:
        """Ask again until both workers have answered; the answers by worker."""
        seen: dict[int, list[Answer]] = {}
        for _ in range(TRIES):
            answer = ask()
            seen.setdefault(answer.worker, []).append(answer)
            if len(seen) == 2:
                return seen
        raise AssertionError(f"only workers {sorted(seen)} answered {TRIES} requests")

    def login_form(self) -> tuple[str, str]:
        page = self.ask("GET", "/login")
        match = _CSRF.search(page.body)
        assert page.cookie and match
        return page.cookie, html.unescape(match.group(1))


@pytest.fixture
def console(postgres_cluster: PostgresCluster, tmp_path: Path) -> Iterator[Console]:
    name = postgres_cluster.create_database()
    env = helpdesk_env(tmp_path / "data", postgres_cluster.url(name))
    run(env, "init")
    run(env, "user", "add", ADMIN, "--role", "admin", "--password-stdin", input=f"{PASSWORD}\n".encode())
    port = free_port()
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen([HELPDESK, "web", "--workers", "2", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, alive=lambda: process.poll() is None)
        yield Console(port, env, process)
    finally:
        terminate(process, 30)
        log.close()
        postgres_cluster.drop_database(name)


def test_two_workers_answer_behind_one_address_a_killed_one_is_replaced_and_they_stop_together(
    console: Console, tmp_path: Path
) -> None:
    answers = console.from_both(lambda: console.ask("GET", "/healthz"))
    first = set(answers)
    assert console.process.pid not in first  # the parent only supervises
    assert all(a.status == 200 for found in answers.values() for a in found)
    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: any(console.ask("GET", "/healthz").worker not in first for _ in range(20)),
             timeout=30, what="a new worker in place of the killed one")
    workers = set(console.from_both(lambda: console.ask("GET", "/healthz")))
    assert killed not in workers and len(workers) == 2
    console.process.send_signal(signal.SIGTERM)
    assert console.process.wait(30) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = (tmp_path / "web.log").read_text()
    assert "Traceback" not in log and f"console worker {killed} ended (signal 9); starting another" in log


def test_failed_logins_spread_over_both_workers_lock_the_account_on_both(console: Console) -> None:
    cookie, token = console.login_form()
    guess = {"email": ADMIN, "password": "wrong", "csrf_token": token}
    failed_on = [console.ask("POST", "/login", cookie=cookie, form=guess) for _ in range(5)]
    assert [a.status for a in failed_on] == [401] * 5
    right = {"email": ADMIN, "password": PASSWORD, "csrf_token": token}
    refused = console.from_both(lambda: console.ask("POST", "/login", cookie=cookie, form=right))
    # Both refuse even the right password: at least one of them saw fewer than 5 of the failures itself.
    assert all(a.status == 429 for found in refused.values() for a in found)


def test_logout_on_one_worker_ends_the_session_on_both(console: Console) -> None:
    cookie, token = console.login_form()
    login = console.ask("POST", "/login", cookie=cookie, form={"email": ADMIN, "password": PASSWORD, "csrf_token": token})
    assert login.status == 302 and login.cookie
    page = console.ask("GET", "/tickets", cookie=login.cookie)
    copied = page.cookie or login.cookie  # the cookie as it stands, with the page's CSRF token in it
    token = html.unescape(_CSRF.search(page.body).group(1))  # type: ignore[union-attr]
    before = console.from_both(lambda: console.ask("GET", "/tickets", cookie=copied))
    assert all(a.status == 200 for found in before.values() for a in found)

    out = console.ask("POST", "/logout", cookie=copied, form={"csrf_token": token})
    assert out.status == 302 and out.location.endswith("/login")
    after = console.from_both(lambda: console.ask("GET", "/tickets", cookie=copied))
    assert all(a.status == 302 and "/login" in a.location for found in after.values() for a in found)


def _scrape(console: Console) -> tuple[int, dict[str, float]]:
    answer = console.ask("GET", "/metrics")
    assert answer.status == 200
    samples = {}
    for family in text_string_to_metric_families(answer.body):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return answer.worker, samples


def test_metrics_on_both_workers_count_mail_ingested_by_another_process(console: Console, tmp_path: Path) -> None:
    before = [_scrape(console) for _ in range(4)]
    assert all(s["helpdesk_mails_received_total"] == 0 for _, s in before)
    run(console.env, "ingest", input=make_mail(1))
    run(console.env, "ingest", input=make_mail(2))
    found: dict[int, dict[str, float]] = {}
    for _ in range(TRIES):
        worker, samples = _scrape(console)
        found[worker] = samples
        if len(found) == 2:
            break
    assert len(found) == 2
    for samples in found.values():
        assert samples["helpdesk_mails_received_total"] == 2
        assert samples['helpdesk_mails{status="processed"}'] == 2
        assert samples["helpdesk_mail_processing_seconds_count"] == 2
        assert samples["helpdesk_outbox_depth"] >= 2  # the acknowledgements, no sender running


def test_readyz_is_503_while_postgresql_is_down_and_200_once_it_is_back(
    console: Console, postgres_cluster: PostgresCluster
) -> None:
    up = console.from_both(lambda: console.ask("GET", "/readyz"))
    assert all(a.status == 200 for found in up.values() for a in found)
    postgres_cluster.pause()
    try:
        down = console.from_both(lambda: console.ask("GET", "/readyz"))
        assert all(a.status == 503 and '"database":"unreachable"' in a.body.replace(" ", "")
                   for found in down.values() for a in found)
        assert console.ask("GET", "/healthz").status == 200  # the process is up all the same
    finally:
        postgres_cluster.resume()
    wait_for(lambda: console.ask("GET", "/readyz").status == 200, timeout=30, what="readyz 200 again")
    again = console.from_both(lambda: console.ask("GET", "/readyz"))
    assert all(a.status == 200 for found in again.values() for a in found)
