"""OpenAPI paths and schemas for outgoing webhooks (admins)."""

from __future__ import annotations

from typing import Any

from helpdesk.core.models import WebhookFormat
from helpdesk.core.webhooks import SUBSCRIBABLE

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ID = {"name": "hook_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_HOOK = {"application/json": {"schema": {"$ref": "#/components/schemas/Webhook"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "No or bad token", 403: "Not allowed for this role", 404: "Not found",
            422: "Refused: the reason is in `error`"}  # fmt: skip
    return {str(c): {"description": text[c], "content": _ERROR} for c in codes}


WEBHOOK_SCHEMAS: dict[str, Any] = {
    "Webhook": {"type": "object", "required": ["name", "url", "events"], "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string", "maxLength": 80},
        "url": {"type": "string", "format": "uri", "description": "http(s); redirects are not followed"},
        "events": {"type": "array", "items": {"type": "string", "enum": [e.value for e in SUBSCRIBABLE]}},
        "format": {"type": "string", "enum": [f.value for f in WebhookFormat], "default": "json",
                   "description": "json: our payload; slack: {\"text\"}; teams: a MessageCard"},
        "enabled": {"type": "boolean", "default": True},
        "secret": {"type": "string", "readOnly": True,
                   "description": "the signing secret: only in the answer to adding a webhook or asking for a new secret"},
    }},  # fmt: skip
    "WebhookDelivery": {"type": "object", "properties": {
        "id": {"type": "integer"}, "delivery": {"type": "string", "description": "X-Helpdesk-Delivery"},
        "event": {"type": "string"}, "ticket": {"type": ["integer", "null"]},
        "status": {"type": "string", "enum": ["pending", "sending", "sent", "failed"]},
        "attempts": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
        "created_at": {"type": "string"}, "sent_at": {"type": ["string", "null"]},
    }},  # fmt: skip
}


def webhook_paths() -> dict[str, Any]:
    body = {"required": True, "content": _HOOK}
    hook = {"description": "The webhook", "content": _HOOK}
    return {
        "/webhooks": {
            "get": {"summary": "The outgoing webhooks (admins)", "operationId": "listWebhooks",
                    "responses": {"200": {"description": "All webhooks", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"webhooks": {"type": "array", "items": {
                            "$ref": "#/components/schemas/Webhook"}}}}}}}, **_errors(401, 403)}},
            "post": {"summary": "Add a webhook; the answer carries its signing secret, this once (admins)",
                     "operationId": "addWebhook", "requestBody": body,
                     "responses": {"201": hook, **_errors(400, 401, 403, 422)}},
        },
        "/webhooks/{hook_id}": {
            "put": {"summary": "Change a webhook, or disable it with enabled=false (admins)", "operationId": "changeWebhook",
                    "parameters": [_ID], "requestBody": body, "responses": {"200": hook, **_errors(400, 401, 403, 404, 422)}},
            "delete": {"summary": "Delete a webhook and its deliveries (admins)", "operationId": "deleteWebhook",
                       "parameters": [_ID], "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}},
        },
        "/webhooks/{hook_id}/secret": {"post": {
            "summary": "A new signing secret, in the answer this once (admins)", "operationId": "newWebhookSecret",
            "parameters": [_ID], "responses": {"200": hook, **_errors(401, 403, 404)}}},
        "/webhooks/{hook_id}/test": {"post": {
            "summary": "Queue a `ping` event to the webhook (admins)", "operationId": "testWebhook", "parameters": [_ID],
            "responses": {"202": {"description": "Queued", "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/WebhookDelivery"}}}}, **_errors(401, 403, 404)}}},
        "/webhooks/{hook_id}/deliveries": {"get": {
            "summary": "The webhook's latest deliveries, newest first, with their errors (admins)",
            "operationId": "listWebhookDeliveries", "parameters": [_ID],
            "responses": {"200": {"description": "Deliveries", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"deliveries": {"type": "array", "items": {
                    "$ref": "#/components/schemas/WebhookDelivery"}}}}}}}, **_errors(401, 403, 404)}}},
    }  # fmt: skip
