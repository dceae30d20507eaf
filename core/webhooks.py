"""Outgoing webhooks: ticket events POSTed, signed, to URLs an admin configured.

Events come from the one place every ticket change passes: the audit trail. ``audit.record`` hands
each entry to ``from_audit``, which queues a delivery per subscribed webhook in the same transaction
(so an event is sent if and only if its change was committed). A requester's reply is not audited;
``tickets.user_wrote`` calls ``emit`` for it.

Deliveries are drained by the sender (``helpdesk send`` / ``run``, mailgateway.webhook) with the
outbox's claims, leases and backoff (core.outbox with ``table=WebhookDelivery``): at least once, each
under a stable ``X-Helpdesk-Delivery`` id that receivers de-duplicate on.

Personal data: none goes out. A payload names the ticket number, kind, status, priority, category,
the event and its time, and a link to the console (where reading more needs a login): no subject,
no addresses, no names, no message text.

Signature: ``X-Helpdesk-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed with the
webhook's secret, ``X-Helpdesk-Timestamp`` the Unix time of that attempt. Receivers should refuse a
timestamp more than REPLAY_WINDOW away from their clock and a delivery id they have seen.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from helpdesk.core import audit
from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.locks import transaction_memo
from helpdesk.core.mailauth import seal, unseal
from helpdesk.core.models import (
    AccessRequest,
    AuditEntry,
    OutboxStatus,
    Ticket,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
    utcnow,
)
from helpdesk.core.settings import Settings

SEALING = b"helpdesk webhook secrets"
REPLAY_WINDOW = timedelta(minutes=5)  # documented for receivers
DEADLINE = timedelta(days=1)  # a receiver down longer than this: the delivery fails, visibly
SIGNATURE_HEADER = "X-Helpdesk-Signature"
TIMESTAMP_HEADER = "X-Helpdesk-Timestamp"
DELIVERY_HEADER = "X-Helpdesk-Delivery"
EVENT_HEADER = "X-Helpdesk-Event"


class WebhookEvent(enum.Enum):
    CREATED = "ticket.created"
    REPLIED = "ticket.replied"  # a public reply: by the desk, or the requester's (mail or portal)
    STATUS = "ticket.status"
    SLA_BREACH = "ticket.sla_breach"
    APPROVAL = "ticket.approval"  # approval asked for, granted or refused
    PING = "ping"  # an admin's test; sent whatever the subscription


SUBSCRIBABLE = [e for e in WebhookEvent if e is not WebhookEvent.PING]


class WebhookError(Refusal, ValueError):
    """Bad input for a webhook, said in one line."""


# -- admin use cases -------------------------------------------------------------------------


def _check(name: str, url: str, events: list[str]) -> tuple[str, str, list[str]]:
    name, url = name.strip(), url.strip()
    if not name or len(name) > 80:
        raise WebhookError(N_("a webhook needs a name of 1 to 80 characters"))
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 2000:
        raise WebhookError(N_("%(url)r is no http(s) URL"), url=url)
    if parts.username or parts.password:
        raise WebhookError(N_("put no user or password in the URL: deliveries are signed with the webhook's secret"))
    known = {e.value for e in SUBSCRIBABLE}
    unknown = sorted(set(events) - known)
    if unknown:
        raise WebhookError(N_("unknown event %(unknown)s (known: %(known)s)"), unknown=", ".join(unknown),
                           known=", ".join(sorted(known)))
    if not events:
        raise WebhookError(N_("choose at least one event"))
    return name, url, [e.value for e in SUBSCRIBABLE if e.value in events]


def _format(value: str | WebhookFormat) -> WebhookFormat:
    try:
        return WebhookFormat(value)
    except ValueError:
        raise WebhookError(N_("format must be one of %(known)s, not %(value)r"),
                           known=", ".join(f.value for f in WebhookFormat), value=value) from None


def _snapshot(hook: Webhook) -> dict[str, Any]:
    # never the secret
    return {"name": hook.name, "url": hook.url, "events": list(hook.events), "format": hook.format.value,
            "enabled": hook.enabled}  # fmt: skip


def create(
    session: Session, settings: Settings, actor: str, *, name: str, url: str, events: list[str],
    format: str | WebhookFormat = WebhookFormat.JSON, enabled: bool = True,
) -> tuple[Webhook, str]:
    """A new webhook and its signing secret: shown to the admin this once, kept sealed; audited."""
    name, url, events = _check(name, url, events)
    if session.scalar(select(Webhook.id).where(Webhook.name == name)) is not None:
        raise WebhookError(N_("a webhook named %(name)r exists already"), name=name)
    secret = new_secret()
    hook = Webhook(name=name, url=url, events=events, format=_format(format), enabled=enabled,
                   secret=seal(settings.secret_key, secret, SEALING))  # fmt: skip
    session.add(hook)
    session.flush()
    audit.record(session, actor=actor, action="webhook.create", object_type="webhook", object_id=hook.id,
                 after=_snapshot(hook))  # fmt: skip
    return hook, secret


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def update(
    session: Session, actor: str, hook: Webhook, *, name: str, url: str, events: list[str],
    format: str | WebhookFormat, enabled: bool,
) -> Webhook:
    """Change a webhook (not its secret: see ``rotate_secret``); audited. Queued deliveries go to the new URL."""
    name, url, events = _check(name, url, events)
    clash = session.scalar(select(Webhook.id).where(Webhook.name == name, Webhook.id != hook.id))
    if clash is not None:
        raise WebhookError(N_("a webhook named %(name)r exists already"), name=name)
    before = _snapshot(hook)
    hook.name, hook.url, hook.events, hook.format, hook.enabled = name, url, events, _format(format), enabled
    session.flush()
    audit.record(session, actor=actor, action="webhook.update", object_type="webhook", object_id=hook.id,
                 before=before, after=_snapshot(hook))  # fmt: skip
    return hook


def rotate_secret(session: Session, settings: Settings, actor: str, hook: Webhook) -> str:
    """A new signing secret (shown once); deliveries not yet sent are signed with it. Audited."""
    secret = new_secret()
    hook.secret = seal(settings.secret_key, secret, SEALING)
    audit.record(session, actor=actor, action="webhook.secret", object_type="webhook", object_id=hook.id)
    return secret


def remove(session: Session, actor: str, hook: Webhook) -> None:
    """Delete a webhook and its deliveries (sent or not); audited."""
    before = _snapshot(hook)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    audit.record(session, actor=actor, action="webhook.delete", object_type="webhook", object_id=hook.id,
                 before=before)  # fmt: skip


def send_test(session: Session, actor: str, hook: Webhook) -> WebhookDelivery:
    """Queue a ``ping`` to one webhook (enabled or not), delivered by the sender like any event; audited."""
    delivery = _queue(session, hook, WebhookEvent.PING, None, {"by": actor})
    audit.record(session, actor=actor, action="webhook.test", object_type="webhook", object_id=hook.id,
                 after={"delivery": delivery.delivery_id})  # fmt: skip
    return delivery


def list_all(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.name)))


def recent_deliveries(session: Session, hook_id: int, limit: int = 20) -> list[WebhookDelivery]:
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
                                .order_by(WebhookDelivery.id.desc()).limit(limit)))  # fmt: skip


def failed_count(session: Session) -> int:
    """Deliveries that failed for good: what admins are shown on the webhooks page."""
    return session.scalar(select(func.count()).where(WebhookDelivery.status == OutboxStatus.FAILED)) or 0


def secret_of(settings: Settings, hook: Webhook) -> str | None:
    """The signing secret; None if it was sealed under another secret key (set a new one)."""
    return unseal(settings.secret_key, hook.secret, SEALING)


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    event: WebhookEvent
    ticket_id: int
    detail: dict[str, Any]


def _decision(action: str) -> str:
    return {"approve": "approved", "reject": "rejected", "request": "requested"}[action.rpartition(".")[2]]


def _event_of(session: Session, entry: AuditEntry) -> _Found | None:
    action, ticket_id, after = entry.action, entry.object_id, entry.after or {}
    if entry.object_type == "access_request" and action in ("access.request", "access.approve", "access.reject"):
        request = session.get(AccessRequest, entry.object_id)
        return _Found(WebhookEvent.APPROVAL, request.ticket_id, {"decision": _decision(action)}) if request else None
    if entry.object_type != "ticket" or ticket_id is None:
        return None
    if action == "ticket.open":
        return _Found(WebhookEvent.CREATED, ticket_id, {})
    if action == "ticket.reply":
        return _Found(WebhookEvent.REPLIED, ticket_id, {"by": "desk"})
    if action == "ticket.change" and "status" in after:
        return _Found(WebhookEvent.STATUS, ticket_id, {"from": (entry.before or {}).get("status"), "to": after["status"]})
    if action == "sla.breach":
        return _Found(WebhookEvent.SLA_BREACH, ticket_id, {"metric": after.get("metric")})
    if action in ("request.approve", "request.reject"):
        return _Found(WebhookEvent.APPROVAL, ticket_id, {"decision": _decision(action)})
    return None


def _subscribed(session: Session) -> list[Webhook]:
    """Enabled webhooks, read once per transaction: most transactions write audit entries."""
    memo = transaction_memo(session)
    if "webhooks" not in memo:
        with session.no_autoflush:  # audit entries may be left for the next flush (audit.record's flush=False)
            memo["webhooks"] = list(session.scalars(select(Webhook).where(Webhook.enabled.is_(True)).order_by(Webhook.id)))
    hooks: list[Webhook] = memo["webhooks"]
    return hooks


def from_audit(session: Session, entry: AuditEntry) -> None:
    """Queue the event an audit entry stands for (if any) to every webhook subscribed to it."""
    hooks = _subscribed(session)
    if not hooks:
        return
    found = _event_of(session, entry)
    if found is not None:
        _fan_out(session, hooks, found)


def emit(session: Session, ticket: Ticket, event: WebhookEvent, detail: dict[str, Any]) -> None:
    """An event no audit entry stands for (a requester's reply)."""
    hooks = _subscribed(session)
    if hooks:
        _fan_out(session, hooks, _Found(event, ticket.id, detail))


def _fan_out(session: Session, hooks: list[Webhook], found: _Found) -> None:
    for hook in hooks:
        if found.event.value in hook.events:
            _queue(session, hook, found.event, session.get(Ticket, found.ticket_id), found.detail)


def _queue(
    session: Session, hook: Webhook, event: WebhookEvent, ticket: Ticket | None, detail: dict[str, Any]
) -> WebhookDelivery:
    now = utcnow()
    delivery_id = str(uuid.uuid4())
    payload: dict[str, Any] = {
        "event": event.value,
        "delivery": delivery_id,
        "at": now.isoformat(timespec="seconds"),
        "ticket": None if ticket is None else {
            "number": ticket.id, "kind": ticket.kind.value, "status": ticket.status.value,
            "priority": ticket.priority, "category": ticket.category,
        },
        "detail": detail,
    }  # fmt: skip
    row = WebhookDelivery(
        delivery_id=delivery_id, webhook_id=hook.id, event=event.value, ticket_id=ticket.id if ticket else None,
        body=json.dumps(payload, sort_keys=True).encode(), deadline_at=now + DEADLINE,
    )  # fmt: skip
    session.add(row)
    return row


# -- what goes on the wire -------------------------------------------------------------------


def render(settings: Settings, format: WebhookFormat, stored: bytes) -> bytes:
    """The request body for one delivery: the same bytes at every attempt (the console URL is configuration)."""
    payload = json.loads(stored)
    ticket = payload["ticket"]
    link = f"{settings.console_url}/tickets/{ticket['number']}" if ticket else f"{settings.console_url}/"
    if format is WebhookFormat.JSON:
        if ticket:
            ticket["url"] = link
        return json.dumps(payload, sort_keys=True).encode()
    text = summary(payload)
    if format is WebhookFormat.SLACK:
        return json.dumps({"text": f"{text} <{link}|Open>"}).encode()
    card = {
        "@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": text, "text": text,
        "potentialAction": [{"@type": "OpenUri", "name": "Open", "targets": [{"os": "default", "uri": link}]}],
    }  # fmt: skip
    return json.dumps(card).encode()


def summary(payload: dict[str, Any]) -> str:
    """One line for people (Slack, Teams): no personal data, as the JSON payload."""
    ticket, detail, event = payload["ticket"], payload["detail"], payload["event"]
    if ticket is None:
        return "Helpdesk webhook test"
    what = {
        WebhookEvent.CREATED.value: "created",
        WebhookEvent.REPLIED.value: f"replied to ({detail.get('by')})",
        WebhookEvent.STATUS.value: f"status {detail.get('from')} -> {detail.get('to')}",
        WebhookEvent.SLA_BREACH.value: f"SLA breached ({detail.get('metric')})",
        WebhookEvent.APPROVAL.value: f"approval {detail.get('decision')}",
    }.get(event, event)
    return f"Ticket #{ticket['number']} {what}: {ticket['kind']}, {ticket['priority']}, {ticket['status']}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Helpdesk-Signature value for one attempt."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def headers(secret: str, delivery_id: str, event: str, body: bytes, at: datetime) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": "helpdesk-webhooks",
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
