"""OpenAPI paths and schemas for custom fields, their values on tickets, and groups."""

from __future__ import annotations

from typing import Any

from helpdesk.core.fields import APPLIES_TO
from helpdesk.core.models import FieldType

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "group_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "integer"}}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "No or bad token", 403: "Not allowed for this role", 404: "Not found",
            422: "Refused: the reason is in `error`"}  # fmt: skip
    return {str(c): {"description": text[c], "content": _ERROR} for c in codes}


FIELD_SCHEMAS: dict[str, Any] = {
    "Field": {"type": "object", "required": ["key", "label", "type"], "properties": {
        "key": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,39}$", "description": "names it in #set, filters, JSON"},
        "label": {"type": "string", "maxLength": 80},
        "type": {"type": "string", "enum": [t.value for t in FieldType],
                 "description": "choice: one of choices; date: YYYY-MM-DD; user: an agent's address"},
        "applies_to": {"type": "string", "enum": list(APPLIES_TO), "default": "all",
                       "description": "the kind of ticket; event: an incident a monitoring alert opened"},
        "choices": {"type": "array", "items": {"type": "string"}},
        "required": {"type": "boolean", "default": False, "description": "a set value cannot be cleared"},
        "position": {"type": "integer", "default": 0},
    }},
    "FieldValues": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "field key -> value; a blank value clears the field"},
    "Group": {"type": "object", "required": ["name"], "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string", "maxLength": 80},
        "email": {"type": ["string", "null"], "description": "an alias the group reads"},
        "members": {"type": "array", "items": {"type": "string"}, "description": "agents' addresses"},
    }},
}


def field_paths() -> dict[str, Any]:
    ticket = {"200": {"description": "The ticket", "content": _json("Ticket")}}
    return {
        "/fields": {
            "get": {"summary": "Custom field definitions", "operationId": "listFields",
                    "responses": {"200": {"description": "The fields", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"fields": {"type": "array", "items": {
                            "$ref": "#/components/schemas/Field"}}}}}}}, **_errors(401, 403)}},
            "post": {"summary": "Define a field (admins)", "operationId": "createField",
                     "requestBody": {"required": True, "content": _json("Field")},
                     "responses": {"201": {"description": "Defined", "content": _json("Field")},
                                   **_errors(400, 401, 403, 422)}},
        },
        "/fields/{key}": {
            "parameters": [_KEY],
            "put": {"summary": "Change a field (admins); a field with values keeps its type", "operationId": "saveField",
                    "requestBody": {"required": True, "content": _json("Field")},
                    "responses": {"200": {"description": "Changed", "content": _json("Field")},
                                  **_errors(400, 401, 403, 404, 422)}},
            "delete": {"summary": "Delete a field and its values (admins)", "operationId": "deleteField",
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}},
        },
        "/tickets/{number}/fields": {"put": {
            "summary": "Set field values on a ticket (all checked before any is set)", "operationId": "setTicketFields",
            "parameters": [_NUMBER], "requestBody": {"required": True, "content": _json("FieldValues")},
            "responses": {**ticket, **_errors(400, 401, 403, 404, 422)}}},
        "/tickets/{number}/group": {"put": {
            "summary": "Put a ticket in a group (null: none)", "operationId": "setTicketGroup", "parameters": [_NUMBER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"group": {"type": ["string", "null"]}}}}}},
            "responses": {**ticket, **_errors(400, 401, 403, 404, 422)}}},
        "/groups": {
            "get": {"summary": "Groups and their members", "operationId": "listGroups",
                    "responses": {"200": {"description": "The groups", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"groups": {"type": "array", "items": {
                            "$ref": "#/components/schemas/Group"}}}}}}}, **_errors(401, 403)}},
            "post": {"summary": "Add a group (admins)", "operationId": "createGroup",
                     "requestBody": {"required": True, "content": _json("Group")},
                     "responses": {"201": {"description": "Added", "content": _json("Group")},
                                   **_errors(400, 401, 403, 422)}},
        },
        "/groups/{group_id}": {
            "parameters": [_ID],
            "put": {"summary": "Rename a group, change its alias or members (admins); its tickets follow a rename",
                    "operationId": "saveGroup", "requestBody": {"required": True, "content": _json("Group")},
                    "responses": {"200": {"description": "Changed", "content": _json("Group")},
                                  **_errors(400, 401, 403, 404, 422)}},
            "delete": {"summary": "Delete a group (its tickets keep no group; admins)", "operationId": "deleteGroup",
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}},
        },
    }
