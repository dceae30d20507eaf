"""/healthz, /readyz and /metrics: open to monitoring without a login, and telling it counts only."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from helpdesk.core import db
from helpdesk.core.mailauth import DbTokenStore
from helpdesk.core.settings import Settings
from tests.core.desk import mail, make_desk
from tests.servers import free_port
from helpdesk.web import create_app


def scrape(client: FlaskClient) -> dict[str, float]:
    """Every sample of /metrics as 'name{label="value"}' -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_metrics_need_no_login_and_change_when_mail_comes_in(client: FlaskClient, factory, tmp_path: Path) -> None:
    client.application.config["METRICS_REUSE_SECONDS"] = 0  # every scrape computes anew
    before = scrape(client)
    assert before["helpdesk_mails_received_total"] == 0
    desk = make_desk(factory, tmp_path)
    desk.deliver(mail(sender="carol.secret@example.com", subject="Salary spreadsheet for Dave"))
    after = scrape(client)
    assert after["helpdesk_mails_received_total"] == 1
    assert after['helpdesk_mails{status="processed"}'] == 1
    assert after["helpdesk_mails_processed_total"] == 1
    assert after["helpdesk_mail_processing_seconds_count"] == 1
    assert after['helpdesk_mail_processing_seconds_bucket{le="+Inf"}'] == 1
    assert after["helpdesk_outbox_depth"] > before["helpdesk_outbox_depth"]  # the acknowledgement waits
    assert 'helpdesk_sla_breaches_total{metric="response"}' in after


def test_nothing_sensitive_in_metrics_or_readiness(client: FlaskClient, factory, settings: Settings, tmp_path: Path) -> None:
    make_desk(factory, tmp_path).deliver(mail(sender="carol.secret@example.com", subject="Salary spreadsheet for Dave"))
    DbTokenStore(factory, settings).failed("hr-inbox@example.org", "invalid_grant")
    pages = client.get("/metrics").get_data(as_text=True) + client.get("/readyz").get_data(as_text=True)
    for secret in ("carol", "Salary", "hr-inbox", "example", "invalid_grant", "@"):
        assert secret not in pages


def test_readyz_fails_while_a_mailbox_login_fails(client: FlaskClient, factory, settings: Settings) -> None:
    assert client.get("/readyz").status_code == 200
    store = DbTokenStore(factory, settings)
    store.failed("it@example.org", "invalid_grant: consent revoked")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "mailboxes": "failing"}
    assert scrape(client)['helpdesk_mail_logins_failing{auth="oauth2"}'] == 1
    store.succeeded("it@example.org", None)
    assert client.get("/readyz").status_code == 200


def test_healthz_answers_without_the_database_and_readyz_says_it_is_unreachable(settings: Settings) -> None:
    # A PostgreSQL address where nothing listens: a database that is down.
    engine = db.make_engine(f"postgresql+psycopg://helpdesk@127.0.0.1:{free_port()}/helpdesk")
    try:
        app: Flask = create_app(settings, db.make_sessionmaker(engine), testing=True)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["checks"] == {"database": "unreachable", "mailboxes": "unknown"}
        assert client.get("/metrics").status_code == 503
    finally:
        engine.dispose()


def test_every_check_is_one_word(client: FlaskClient) -> None:
    body = client.get("/readyz").get_json()
    assert body["status"] == "ok" and all(value.isalpha() for value in body["checks"].values())


def test_hammering_metrics_costs_the_database_one_computation_a_second(app: Flask, factory, tmp_path: Path) -> None:
    statements: list[str] = []
    engine = factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    scrape(app.test_client())
    once = len(statements)
    assert once > 0
    with ThreadPoolExecutor(8) as pool:
        scrapes = list(pool.map(lambda _: scrape(app.test_client()), range(40)))
    assert len(statements) <= 2 * once  # at most one more computation, were the second just over
    make_desk(factory, tmp_path).deliver(mail())
    time.sleep(1.1)
    assert scrape(app.test_client())["helpdesk_mails_received_total"] == 1  # and fresh a second later
