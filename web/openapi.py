"""The OpenAPI 3.1 description of the JSON API."""

from __future__ import annotations

from typing import Any

from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.core.queue import COUNT_CAP
from helpdesk.web.contacts import contact_paths
from helpdesk.web.desk_openapi import DESK_SCHEMAS, SEEN, STALE_REPLY, desk_paths
from helpdesk.web.fields_openapi import FIELD_SCHEMAS, field_paths
from helpdesk.web.portal_openapi import PORTAL_SCHEMAS, portal_paths
from helpdesk.web.webhooks_openapi import WEBHOOK_SCHEMAS, webhook_paths

_TICKET_FILTERS = [
    ("kind", ["incident", "service_request", "access_request"]),
    ("status", ["unresolved", "any", "new", "open", "pending", "awaiting_approval", "in_progress", "resolved", "closed"]),
    ("priority", list(DESK_PRIORITIES)),
    ("sla", ["breached", "at_risk", "on_track"]),
    ("sort", ["newest", "oldest", "updated", "priority", "due", "relevance"]),
]


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "No or bad token", 403: "Not allowed for this role", 404: "Not found",
            422: "Refused by the service"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def _number() -> dict[str, Any]:
    return {"name": "number", "in": "path", "required": True, "schema": {"type": "integer"}}


def _text_body() -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Text"}}}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _object(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


def _merge_and_macro_paths() -> dict[str, Any]:
    ticket = {"description": "The ticket", "content": _json("Ticket")}
    refused = _errors(400, 401, 403, 404, 422)
    macro_name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/tickets/{number}/merge": {"post": {
            "summary": "Merge this ticket (a duplicate) into another: messages, watchers and events move, this one "
                       "closes, later mail to it lands in the target; refused while either awaits approval "
                       "(agents, admins)",
            "operationId": "mergeTicket", "parameters": [_number()],
            "requestBody": _object(["into"], into={"type": "integer", "description": "the ticket to merge into"}),
            "responses": {"200": {"description": "The target after the merge", "content": _json("Ticket")}, **refused},
        }},
        "/tickets/{number}/unmerge": {"post": {
            "summary": "Undo this ticket's merge: what moved goes back; mail that arrived after it stays on the "
                       "target (agents, admins)",
            "operationId": "unmergeTicket", "parameters": [_number()],
            "responses": {"200": ticket, **_errors(401, 403, 404, 422)},
        }},
        "/tickets/{number}/messages/{message_id}/split": {"post": {
            "summary": "Split one incoming mail off into a new ticket linked to this one; its sender is told the "
                       "number (agents, admins)",
            "operationId": "splitMessage",
            "parameters": [_number(), {"name": "message_id", "in": "path", "required": True,
                                       "schema": {"type": "integer"}, "description": "a message's `id`"}],
            "responses": {"201": {"description": "The new ticket", "content": _json("Ticket")},
                          **_errors(401, 403, 404, 422)},
        }},
        "/tickets/{number}/macro": {"post": {
            "summary": "Send a canned reply (and set what the macro sets) as the caller (agents, admins)",
            "operationId": "applyMacro", "parameters": [_number()],
            "requestBody": _object(["name"], name={"type": "string"}),
            "responses": {"200": {"description": "What changed, and the ticket", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"changed": {"type": "object"},
                                                            "ticket": {"$ref": "#/components/schemas/Ticket"}}}}}},
                          **refused},
        }},
        "/macros": {
            "get": {"summary": "The canned replies", "operationId": "listMacros",
                    "responses": {"200": {"description": "All macros", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"macros": {"type": "array", "items": {
                            "$ref": "#/components/schemas/Macro"}}}}}}}, **_errors(401, 403)}},
            "post": {"summary": "Add a macro (admins)", "operationId": "addMacro",
                     "requestBody": {"required": True, "content": _json("Macro")},
                     "responses": {"201": {"description": "The macro", "content": _json("Macro")},
                                   **_errors(400, 401, 403, 422)}},
        },
        "/macros/{name}": {
            "put": {"summary": "Change a macro (admins)", "operationId": "changeMacro", "parameters": [macro_name],
                    "requestBody": {"required": True, "content": _json("Macro")},
                    "responses": {"200": {"description": "The macro", "content": _json("Macro")}, **refused}},
            "delete": {"summary": "Delete a macro (admins)", "operationId": "deleteMacro", "parameters": [macro_name],
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}},
        },
    }


_MACRO_SCHEMA = {"type": "object", "required": ["name", "body"], "properties": {
    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,79}$"},
    "body": {"type": "string", "description": "Jinja text (sandboxed) with placeholders: requester_name, "
             "requester_email, ticket_number, ticket_tag, subject, category, agent_name; if, no loops"},
    "status": {"type": ["string", "null"]}, "priority": {"type": ["string", "null"], "enum": [*DESK_PRIORITIES, None]},
    "category": {"type": ["string", "null"]}, "assignee": {"type": ["string", "null"], "description": "an agent's email"},
}}


def document(server_url: str) -> dict[str, Any]:
    filters = [_query(n, f"filter by {n}" if n != "sort" else "order", {"type": "string", "enum": e})
               for n, e in _TICKET_FILTERS]
    filters += [
        _query("category", "filter by category", {"type": "string"}),
        _query("assignee", "an assignee's email, or 'none'", {"type": "string"}),
        _query("group", "a group's name, 'mine' (the caller's groups) or 'none'", {"type": "string"}),
        _query("field", "KEY:VALUE, a custom field holding this value", {"type": "string"}),
        _query("q", "text in subject or messages, or #number", {"type": "string"}),
        _query("page", "page number, 50 tickets a page", {"type": "integer", "minimum": 1}),
    ]
    paths: dict[str, Any] = {
        "/tickets": {"get": {
            "summary": "The ticket queue", "operationId": "listTickets", "parameters": filters,
            "responses": {"200": {"description": "One page of tickets", "content": _json("TicketPage")}, **_errors(401, 403)},
        }},
        "/tickets/{number}": {"get": {
            "summary": "One ticket with its messages", "operationId": "getTicket", "parameters": [_number()],
            "responses": {"200": {"description": "The ticket", "content": _json("Ticket")}, **_errors(401, 403, 404)},
        }},
        "/tickets/{number}/reply": {"post": {
            "summary": "Public reply, mailed to the requester and watchers (agents, admins)",
            "operationId": "replyToTicket", "parameters": [_number()],
            "requestBody": {"required": True, "content": _json("Reply")},
            "responses": {"201": {"description": "The stored reply; `not_mailed` names files kept on the ticket "
                                                 "but over the mail size limit", "content": _json("Message")},
                          **_errors(400, 401, 403, 404, 422), **STALE_REPLY},
        }},
        "/tickets/{number}/note": {"post": {
            "summary": "Internal note (agents, admins)", "operationId": "addNote", "parameters": [_number()],
            "requestBody": _text_body(),
            "responses": {"201": {"description": "The stored note", "content": _json("Message")},
                          **_errors(400, 401, 403, 404, 422)},
        }},
        "/tickets/{number}/status": {"post": {
            "summary": "Change the status; requester and watchers are told by email (agents, admins)",
            "operationId": "setTicketStatus", "parameters": [_number()],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": [s for s in _TICKET_FILTERS[1][1] if s not in ("unresolved", "any")]},
                    "reason": {"type": "string", "description": "why (audited)"}}}}}},
            "responses": {"200": {"description": "The ticket after the change", "content": _json("Ticket")},
                          **_errors(400, 401, 403, 404, 422)},
        }},
    }
    paths.update(_merge_and_macro_paths())
    paths.update(portal_paths())
    paths.update(desk_paths())
    paths.update(contact_paths())
    paths.update(webhook_paths())
    paths.update(field_paths())
    paths["/access/{request_id}/{decision}"] = {"post": {
        "summary": "Approve or reject an access request (approvers; never one's own)",
        "operationId": "decideAccess",
        "parameters": [
            {"name": "request_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "decision", "in": "path", "required": True, "schema": {"type": "string", "enum": ["approve", "reject"]}},
        ],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"reason": {"type": "string"}}}}}},
        "responses": {"200": {"description": "Decided", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"status": {"type": "string", "enum": ["approved", "rejected"]},
                                             "message": {"type": "string"}}}}}},
            **_errors(401, 403, 404, 422)},
    }}
    paths["/events/alertmanager"] = {"post": {
        "summary": "Prometheus Alertmanager webhook: each alert becomes an event (agents, admins, and any "
                   "'events only' token, which may call nothing else); 404 while `[events.alertmanager] enabled = false`; "
                   "the `sender` pattern applies to alert mail only",
        "operationId": "alertmanagerWebhook",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": {"description": "What happened to each alert", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"events": {"type": "array", "items": {"type": "object", "properties": {
                "action": {"type": "string"}, "ticket": {"type": ["integer", "null"]}}}}}}}}},
            **_errors(400, 401, 403, 404)},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Helpdesk API", "version": "1",
                 "description": "Token from the console's Users page (admin), sent as `Authorization: Bearer TOKEN`."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "portal": {"type": "http", "scheme": "bearer", "description": "a portal token (hdp_...)"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "Text": {"type": "object", "properties": {"text": {"type": "string", "minLength": 1}}, "required": ["text"]},
                "Reply": {"type": "object", "required": ["text"], "properties": {
                    "text": {"type": "string", "minLength": 1},
                    "seen": SEEN,
                    "attachments": {"type": "array", "items": {"type": "object", "required": ["content_base64"], "properties": {
                        "filename": {"type": "string"}, "content_type": {"type": "string"},
                        "content_base64": {"type": "string", "contentEncoding": "base64"}}}},
                }},
                "Attachment": {"type": "object", "properties": {
                    "filename": {"type": "string"}, "content_type": {"type": "string"}, "size": {"type": "integer"},
                    "sha256": {"type": "string"},
                    "note": {"type": ["string", "null"], "description": "why the file was not kept, when it was not"},
                }},
                "CalendarEvent": {"type": "object", "description": "one event of a calendar invitation in the mail",
                                  "properties": {name: {"type": ["string", "null"]} for name in (
                                      "summary", "start", "end", "organiser", "location", "method")}},
                "Message": {"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "direction": {"type": "string", "enum": ["in", "out"]}, "internal": {"type": "boolean"},
                    "from": {"type": "string"}, "to": {"type": ["array", "null"], "items": {"type": "string"}},
                    "cc": {"type": ["array", "null"], "items": {"type": "string"}},
                    "subject": {"type": "string"}, "text": {"type": "string"},
                    "reply_text": {"type": ["string", "null"], "description": "the text without quoted history"},
                    "message_id": {"type": ["string", "null"]}, "in_reply_to": {"type": ["string", "null"]},
                    "created_at": {"type": ["string", "null"]},
                    "authenticated": {"type": ["boolean", "null"],
                                      "description": "false: a staff address whose mail failed authentication"},
                    "attachments": {"type": "array", "items": {"$ref": "#/components/schemas/Attachment"}},
                    "protection": {"type": ["string", "null"], "enum": ["signed", "encrypted", None],
                                   "description": "signed (signature kept, not verified) or encrypted (not readable)"},
                    "calendar": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/CalendarEvent"}},
                }},
                "Ticket": {"type": "object", "properties": {
                    "number": {"type": "integer"}, "kind": {"type": "string"}, "category": {"type": "string"},
                    "catalogue_item": {"type": ["string", "null"]},
                    "priority": {"type": "string"}, "impact": {"type": ["integer", "null"]},
                    "urgency": {"type": ["integer", "null"]}, "status": {"type": "string"},
                    "requester": {"type": "string"}, "assignee": {"type": ["string", "null"]},
                    "subject": {"type": "string"}, "created_at": {"type": "string"},
                    "updated_at": {"type": ["string", "null"]}, "due_at": {"type": ["string", "null"]},
                    "classification": {"type": "array", "items": {"type": "object"}},
                    "linked_ticket": {"type": ["integer", "null"]},
                    "merged_into": {"type": ["integer", "null"], "description": "merged as a duplicate into this one"},
                    "watchers": {"type": "array", "items": {"type": "string"}},
                    "group": {"type": ["string", "null"], "description": "the group the ticket is in"},
                    "fields": {"$ref": "#/components/schemas/FieldValues"},
                    "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                }},
                "Macro": _MACRO_SCHEMA,
                **PORTAL_SCHEMAS,
                **DESK_SCHEMAS,
                **WEBHOOK_SCHEMAS,
                **FIELD_SCHEMAS,
                "TicketPage": {"type": "object", "properties": {
                    "tickets": {"type": "array", "items": {"$ref": "#/components/schemas/Ticket"}},
                    "total": {"type": "integer", "description": "every matching ticket, counted exactly (the console"
                              f" counts a text search's matches only to {COUNT_CAP:,})"},
                    "page": {"type": "integer"}, "pages": {"type": "integer"},
                }},
            },
        },
    }

