"""Webhooks in the console (headless Chromium) and the JSON API, delivered to a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Contact, Role, WebhookDelivery
from helpdesk.core.settings import Settings
from helpdesk.core.users import issue_api_token
from helpdesk.mailgateway.webhook import deliver_once
from tests.core.desk import Desk, mail
from tests.servers.webhook import Received, WebhookReceiver
from tests.web.browser import LiveServer, log_in, screenshot
from tests.web.conftest import STAFF


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from WebhookReceiver.running()


def _bearer(factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    with transaction(factory) as session:
        user = session.scalars(select(Contact).where(Contact.email == STAFF[role])).one()
        return {"Authorization": f"Bearer {issue_api_token(session, user)}"}


def _deliver(factory: sessionmaker[Session], settings: Settings) -> None:
    """Run the sender once (in a thread: Playwright's event loop owns this one)."""
    worker = threading.Thread(target=deliver_once, args=(factory, settings))
    worker.start()
    worker.join(30)


def _signed(request: Received, secret: str) -> bool:
    timestamp = request.headers["X-Helpdesk-Timestamp"].encode()
    mac = hmac.new(secret.encode(), timestamp + b"." + request.body, hashlib.sha256).hexdigest()
    return request.headers["X-Helpdesk-Signature"] == f"sha256={mac}"


def test_api_adds_tests_changes_and_deletes_a_webhook_audited(
    app: Flask, factory: sessionmaker[Session], settings: Settings, receiver: WebhookReceiver
) -> None:
    client, admin = app.test_client(), _bearer(factory, Role.ADMIN)
    assert client.get("/api/webhooks", headers=_bearer(factory, Role.AGENT)).status_code == 403
    bad = client.post("/api/webhooks", headers=admin, json={"name": "ops", "url": "gopher://x", "events": ["ticket.created"]})
    assert bad.status_code == 422 and "no http(s) URL" in bad.get_json()["error"]
    made = client.post("/api/webhooks", headers=admin,
                       json={"name": "ops", "url": receiver.url, "events": ["ticket.created"], "format": "json"})
    assert made.status_code == 201
    hook = made.get_json()
    secret = hook.pop("secret")
    assert hook == {"id": hook["id"], "name": "ops", "url": receiver.url, "events": ["ticket.created"],
                    "format": "json", "enabled": True}  # fmt: skip
    assert "secret" not in client.get("/api/webhooks", headers=admin).get_json()["webhooks"][0]
    assert client.post(f"/api/webhooks/{hook['id']}/test", headers=admin).status_code == 202
    Desk(factory, settings).deliver(mail())
    _deliver(factory, settings)
    ping, created = receiver.wait_for(2)
    assert (ping.json["event"], created.json["event"]) == ("ping", "ticket.created")
    assert _signed(ping, secret) and _signed(created, secret)
    listed = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin).get_json()["deliveries"]
    assert [(d["event"], d["status"]) for d in listed] == [("ticket.created", "sent"), ("ping", "sent")]
    changed = client.put(f"/api/webhooks/{hook['id']}", headers=admin,
                         json={"name": "ops", "url": receiver.url, "events": ["ticket.created"], "enabled": False})
    assert changed.status_code == 200 and changed.get_json()["enabled"] is False
    Desk(factory, settings).deliver(mail(subject="Not sent: disabled"))
    assert len(client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin).get_json()["deliveries"]) == 2
    rotated = client.post(f"/api/webhooks/{hook['id']}/secret", headers=admin).get_json()["secret"]
    assert rotated != secret
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=admin).status_code == 204
    assert client.get("/api/webhooks", headers=admin).get_json() == {"webhooks": []}
    with factory() as session:
        trail = session.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "webhook")
                                .order_by(AuditEntry.id)).all()  # fmt: skip
    assert trail == ["webhook.create", "webhook.test", "webhook.update", "webhook.secret", "webhook.delete"]
    paths = client.get("/api/openapi.json", headers=admin).get_json()["paths"]
    assert {"/webhooks", "/webhooks/{hook_id}", "/webhooks/{hook_id}/test"} <= set(paths)


def test_admin_adds_a_webhook_in_the_console_and_sees_a_permanent_failure(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings, receiver: WebhookReceiver
) -> None:
    log_in(page, live, Role.ADMIN)
    page.click("header.top nav >> text=Webhooks")
    page.fill("input[aria-label='webhook name']", "chat")
    page.fill("input[aria-label='webhook URL']", receiver.url)
    page.check("form.card input[name=events][value='ticket.created']")
    page.select_option("form.card select[name=format]", "slack")
    page.click("form.card button.primary")
    secret = page.inner_text("#webhook-secret code")
    assert secret.startswith("whsec_")
    page.goto(f"{live.url}/admin/webhooks")
    assert page.query_selector("#webhook-secret") is None  # shown once
    receiver.answers.append(410)
    Desk(factory, settings).deliver(mail())
    _deliver(factory, settings)
    [request] = receiver.wait_for(1)
    assert set(request.json) == {"text"} and _signed(request, secret)
    page.reload()
    assert "1 delivery failed for good" in page.inner_text("p.webhook-failures")
    assert "HTTP 410" in page.inner_text("tr.delivery-failed")
    screenshot(page, "webhooks-failed")
    page.click("tr.delivery-failed >> text=Retry")  # the receiver is fixed
    page.wait_for_selector("text=queued again")
    _deliver(factory, settings)
    assert len(receiver.wait_for(2)) == 2
    page.reload()
    assert page.query_selector("p.webhook-failures") is None and page.query_selector("tr.delivery-sent")
    page.uncheck("section.card input[name=enabled]")
    page.click("section.card >> text=Save")
    page.wait_for_selector("text=Webhook chat saved.")
    assert "disabled" in page.inner_text("section.card h2")
    Desk(factory, settings).deliver(mail(subject="Not sent: disabled"))
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
