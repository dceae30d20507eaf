"""Admin page for outgoing webhooks: add, change, disable, test, new secret, delete; core.webhooks checks and audits."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import outbox, webhooks
from helpdesk.core.models import Role, Webhook, WebhookDelivery, WebhookFormat
from helpdesk.web import outcome
from helpdesk.web.db import current_settings, db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import current_user, roles

bp = Blueprint("webhooks", __name__, url_prefix="/admin/webhooks")


def actor() -> str:
    user = current_user()
    assert user is not None
    return user.email


def fields_from(data: Any, events: Any) -> dict[str, Any]:
    """A webhook's fields from a form or a JSON object; core.webhooks says what is wrong with them."""
    def text(key: str, default: str = "") -> str:
        value = data.get(key, default)
        return value if isinstance(value, str) else ""

    enabled = data.get("enabled", True)
    return {
        "name": text("name"), "url": text("url"), "format": text("format", "json") or "json",
        "events": [e for e in events if isinstance(e, str)] if isinstance(events, list) else [],
        "enabled": enabled if isinstance(enabled, bool) else enabled in ("on", "yes", "true", "1"),
    }  # fmt: skip


def to_json(hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "name": hook.name, "url": hook.url, "events": list(hook.events),
            "format": hook.format.value, "enabled": hook.enabled}  # fmt: skip


def delivery_json(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": row.id, "delivery": row.delivery_id, "event": row.event, "ticket": row.ticket_id,
        "status": row.status.value, "attempts": row.attempts, "last_error": row.last_error,
        "created_at": row.created_at.isoformat(), "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }  # fmt: skip


def found(hook_id: int) -> Webhook:
    hook = db().get(Webhook, hook_id)
    if hook is None:
        abort(404, f"no webhook {hook_id}")
    return hook


def _page(status: int = 200, **more: Any) -> ResponseReturnValue:
    hooks = webhooks.list_all(db())
    return render_template(
        "web/admin/webhooks.html", hooks=hooks, events=webhooks.SUBSCRIBABLE, formats=list(WebhookFormat),
        deliveries={h.id: webhooks.recent_deliveries(db(), h.id) for h in hooks},
        failed=webhooks.failed_count(db()), window=int(webhooks.REPLAY_WINDOW.total_seconds() // 60), **more,
    ), status  # fmt: skip


def _done(message: str) -> ResponseReturnValue:
    return outcome.done(message, url_for("webhooks.index"))


@bp.get("", endpoint="index")
@roles(Role.ADMIN)
def index() -> ResponseReturnValue:
    return _page()


@bp.post("")
@bp.post("/<int:hook_id>")
@roles(Role.ADMIN)
def save(hook_id: int | None = None) -> ResponseReturnValue:
    fields = fields_from(request.form, request.form.getlist("events")) | {"enabled": "enabled" in request.form}
    try:
        if hook_id is None:
            hook, secret = webhooks.create(db(), current_settings(), actor(), **fields)
        else:
            hook = webhooks.update(db(), actor(), found(hook_id), **fields)
    except webhooks.WebhookError as exc:
        outcome.undo(reason_of(exc))
        return _page(422, draft=fields if hook_id is None else None)
    if hook_id is not None:
        return _done(_("Webhook %(name)s saved.", name=hook.name))
    db().commit()
    return _page(secret=(hook.name, secret))  # shown this once: it is kept sealed


@bp.post("/<int:hook_id>/secret")
@roles(Role.ADMIN)
def new_secret(hook_id: int) -> ResponseReturnValue:
    hook = found(hook_id)
    secret = webhooks.rotate_secret(db(), current_settings(), actor(), hook)
    db().commit()
    return _page(secret=(hook.name, secret))


@bp.post("/<int:hook_id>/test")
@roles(Role.ADMIN)
def test(hook_id: int) -> ResponseReturnValue:
    hook = found(hook_id)
    webhooks.send_test(db(), actor(), hook)
    return _done(_("A test event for %(name)s is queued; the sender delivers it within seconds.", name=hook.name))


@bp.post("/<int:hook_id>/delete")
@roles(Role.ADMIN)
def delete(hook_id: int) -> ResponseReturnValue:
    hook = found(hook_id)
    webhooks.remove(db(), actor(), hook)
    return _done(_("Webhook %(name)s deleted.", name=hook.name))


@bp.post("/deliveries/<int:delivery_id>/retry")
@roles(Role.ADMIN)
def retry(delivery_id: int) -> ResponseReturnValue:
    try:
        outbox.retry(db(), delivery_id, table=WebhookDelivery)
    except (LookupError, ValueError) as exc:
        return outcome.refused(reason_of(exc), url_for("webhooks.index"))
    return _done(_("Delivery %(number)s queued again.", number=delivery_id))
