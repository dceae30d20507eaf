"""OpenAPI paths and schemas for satisfaction figures and agent collision (presence, stale replies)."""

from __future__ import annotations

from typing import Any

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer"}}

DESK_SCHEMAS: dict[str, Any] = {
    "Presence": {"type": "object", "properties": {
        "others": {"type": "array", "items": {"type": "object", "properties": {
            "email": {"type": "string"}, "name": {"type": ["string", "null"]},
            "state": {"type": "string", "enum": ["viewing", "typing"]},
            "seen_at": {"type": "string", "format": "date-time"}}}},
        "newest": {"type": "integer", "description": "the newest public message's id: send it as a reply's `seen`"},
        "poll_seconds": {"type": "integer"},
    }},
    "Satisfaction": {"type": "object", "properties": {"results": {"type": "array", "items": {
        "type": "object", "properties": {
            "month": {"type": "string", "description": "YYYY-MM of the answers"},
            "agent": {"type": ["string", "null"], "description": "the assignee when the requester answered"},
            "category": {"type": "string"}, "good": {"type": "integer"}, "bad": {"type": "integer"},
            "score": {"type": "number", "description": "good answers in percent"}}}}}},
}

# The reply's 409: someone else's public message came after the one the caller saw.
STALE_REPLY = {"409": {"description": "A public message newer than `seen` is in the thread (in `newer`): read it, "
                                      "then send again with its id as `seen`",
                       "content": {"application/json": {"schema": {"type": "object", "properties": {
                           "error": {"type": "string"},
                           "newer": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}}}}}}}}
SEEN = {"type": "integer", "description": "the newest message id the caller saw; a newer public message makes it a "
                                          "409 (left out: no check)"}


def desk_paths() -> dict[str, Any]:
    presence = {"200": {"description": "Who else is on the ticket", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Presence"}}}},
        **{str(c): {"description": d, "content": _ERROR} for c, d in ((401, "No or bad token"), (404, "Not found"))}}
    return {
        "/tickets/{number}/presence": {
            "get": {"summary": "Who else has the ticket open (polled within 15 s), and whether they are typing",
                    "operationId": "getPresence", "parameters": [_NUMBER], "responses": presence},
            "post": {"summary": "Say the caller is on the ticket (viewing or typing); answers who else is",
                     "operationId": "putPresence", "parameters": [_NUMBER],
                     "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                         "state": {"type": "string", "enum": ["viewing", "typing"]}}}}}},
                     "responses": {**presence, "400": {"description": "Unknown state", "content": _ERROR}}},
        },
        "/reports/satisfaction": {"get": {
            "summary": "Requesters' answers to the resolution mail, per month, agent and category (newest first)",
            "operationId": "getSatisfaction",
            "parameters": [{"name": "since", "in": "query", "required": False, "description": "first month, YYYY-MM",
                            "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}}],
            "responses": {"200": {"description": "The figures", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Satisfaction"}}}},
                "400": {"description": "Bad month", "content": _ERROR}},
        }},
    }
