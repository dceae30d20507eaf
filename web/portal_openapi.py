"""The requester portal's part of the OpenAPI document (web.openapi): paths under /api/portal."""

from __future__ import annotations

from typing import Any

_PORTAL: list[dict[str, list[str]]] = [{"portal": []}]  # a portal token (hdp_...), not a staff API token


def _error(code: int, text: str) -> dict[str, Any]:
    return {str(code): {"description": text, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}}


def _body(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


def _ok(text: str, ref: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer"}}
_SIGNED_OUT = _error(401, "No or ended portal session")
_NOT_YOURS = _error(404, "No such ticket of yours (someone else's reads the same)")

PORTAL_SCHEMAS: dict[str, Any] = {
    "PortalTicket": {"type": "object", "properties": {
        "number": {"type": "integer"}, "subject": {"type": "string"}, "status": {"type": "string"},
        "kind": {"type": "string"}, "requested_by_you": {"type": "boolean"},
        "created_at": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]},
        "messages": {"type": "array", "description": "the public thread: never internal notes",
                     "items": {"$ref": "#/components/schemas/PortalMessage"}},
        "progress": {"type": "object", "properties": {
            "step": {"type": ["string", "null"], "description": "a service request's fulfilment step"},
            "due_at": {"type": ["string", "null"]},
            "approvals": {"type": "array", "items": {"type": "object", "properties": {
                "what": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "approved", "rejected"]},
                "reason": {"type": ["string", "null"]}, "decided_at": {"type": ["string", "null"]}}}},
            "checklist": {"type": "array", "items": {"type": "object", "properties": {
                "step": {"type": "string"}, "done": {"type": "boolean"}}}},
        }},
    }},
    "PortalMessage": {"type": "object", "properties": {
        "id": {"type": "integer"}, "direction": {"type": "string", "enum": ["in", "out"]},
        "from": {"type": ["string", "null"]}, "text": {"type": "string"}, "created_at": {"type": ["string", "null"]},
        "attachments": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "filename": {"type": "string"}, "content_type": {"type": "string"},
            "size": {"type": "integer"}, "kept": {"type": "boolean"}}}},
    }},
}


def portal_paths() -> dict[str, Any]:
    ticket = {"200": _ok("The ticket, its public thread and progress", "PortalTicket"), **_SIGNED_OUT, **_NOT_YOURS}
    return {
        "/portal/link": {"post": {
            "summary": "Mail a sign-in link to a requester's address (the same answer whether it is on file or "
                       "not; limited per address and per client)",
            "operationId": "portalRequestLink", "security": [],
            "requestBody": _body(["email"], email={"type": "string"}),
            "responses": {"202": {"description": "Mailed if the address has tickets"}, **_error(400, "Bad request"),
                          **_error(429, "Too many links asked for this address or from this client")},
        }},
        "/portal/session": {
            "post": {
                "summary": "Trade a sign-in link (or its last part) for a portal token; the link is used up",
                "operationId": "portalSignIn", "security": [],
                "requestBody": _body(["token"], token={"type": "string"}),
                "responses": {"201": {"description": "The portal token", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"token": {"type": "string"}, "requester": {"type": "string"},
                                                     "expires_in": {"type": "integer"}}}}}},
                              **_error(400, "Bad request, or a link used, expired or not valid")},
            },
            "delete": {"summary": "Sign out: the portal token stops working", "operationId": "portalSignOut",
                       "security": _PORTAL, "responses": {"204": {"description": "Signed out"}, **_SIGNED_OUT}},
        },
        "/portal/tickets": {"get": {
            "summary": "The requester's tickets: asked for or watched", "operationId": "portalTickets",
            "security": _PORTAL,
            "responses": {"200": {"description": "Their tickets", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"tickets": {"type": "array", "items": {
                    "$ref": "#/components/schemas/PortalTicket"}}}}}}}, **_SIGNED_OUT},
        }},
        "/portal/tickets/{number}": {"get": {
            "summary": "One of their tickets", "operationId": "portalTicket", "security": _PORTAL,
            "parameters": [_NUMBER], "responses": ticket,
        }},
        "/portal/tickets/{number}/attachments/{attachment_id}": {"get": {
            "summary": "A file of a public message (a download)", "operationId": "portalAttachment",
            "security": _PORTAL,
            "parameters": [_NUMBER, {"name": "attachment_id", "in": "path", "required": True,
                                     "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "The file", "content": {"application/octet-stream": {}}},
                          **_SIGNED_OUT, **_NOT_YOURS},
        }},
        "/portal/tickets/{number}/reply": {"post": {
            "summary": "The requester's reply, as their mail reply would be: agents are told; a resolved "
                       "ticket reopens", "operationId": "portalReply", "security": _PORTAL, "parameters": [_NUMBER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Reply"}}}},
            "responses": {"201": _ok("The stored reply", "PortalMessage"), **_error(400, "Bad request"),
                          **_SIGNED_OUT, **_NOT_YOURS, **_error(422, "Refused (a closed ticket)")},
        }},
        "/portal/tickets/{number}/close": {"post": {
            "summary": "Close a ticket one asked for (not while it awaits approval)", "operationId": "portalClose",
            "security": _PORTAL, "parameters": [_NUMBER],
            "responses": {**ticket, **_error(422, "Refused (closed already, awaiting approval, only watching)")},
        }},
    }
