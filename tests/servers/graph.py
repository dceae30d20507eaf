"""A local Microsoft Graph stand-in for the mail endpoints the helpdesk uses, on a free loopback port.

It follows Graph v1.0's documented request and response shapes for exactly these endpoints:
- GET/POST /v1.0/users/{user}/mailFolders: folders as {"value": [{"id", "displayName", ...}]}; POST
  {"displayName"} creates one (201) or answers 409 ErrorFolderExists;
- GET /v1.0/users/{user}/mailFolders/{folder}/messages/delta: a round of pages (Prefer:
  odata.maxpagesize, default 10) linked by @odata.nextLink ($skiptoken), ending with an
  @odata.deltaLink ($deltatoken); later rounds list mail added since, and "@removed" entries for mail
  moved away; a state token from before `expire_sync_states()` answers 410 SyncStateNotFound;
- GET /v1.0/users/{user}/messages/{id}/$value: the MIME as delivered;
- POST /v1.0/users/{user}/messages/{id}/move {"destinationId"}: 201 and the message under a new id (as
  Graph's ids change when a message changes folders);
- POST /v1.0/users/{user}/sendMail with Content-Type text/plain and base64 MIME: 202, recorded in `sent`.

Every request's bearer token is checked at the local authorization server (tests/servers/oauth.py):
401 InvalidAuthenticationToken for an expired or revoked one, 403 ErrorAccessDenied when the token's
user is not the mailbox in the path (an app scoped to one shared mailbox by its access policy).
Errors use Graph's {"error": {"code", "message"}} body. Test controls: `throttle(n, retry_after)` (the
next n requests get 429 with Retry-After), `expire_sync_states()`, `hold_moves()` (a move blocks, as
if the network stalled, until the test lets go; it then fails with 503 and moves nothing).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import make_server

from helpdesk.core.settings import AuthKind, MailboxSettings, OAuthFlow, OAuthProvider, OAuthSettings, Transport
from tests.servers import remove_dir, service_dir
from tests.servers.imap import make_self_signed_cert
from tests.servers.oauth import HOST, OAuthServer, _QuietHandler

DEFAULT_PAGE = 10
WELL_KNOWN = {"inbox": "Inbox", "sentitems": "Sent Items"}


@dataclass
class _Folder:
    id: str
    name: str
    messages: dict[str, bytes] = field(default_factory=dict)  # id -> MIME, in arrival order
    log: list[tuple[int, str, str]] = field(default_factory=list)  # (sequence, "created" | "removed", id)


@dataclass
class _Mailbox:
    folders: dict[str, _Folder] = field(default_factory=dict)

    def folder(self, key: str) -> _Folder | None:
        return self.folders.get(key) or next((f for f in self.folders.values() if f.id == key), None)

    def find(self, message_id: str) -> _Folder | None:
        return next((f for f in self.folders.values() if message_id in f.messages), None)


@dataclass(frozen=True)
class Sent:
    user: str
    raw: bytes


def _new_id() -> str:
    return "AAMk" + secrets.token_urlsafe(48)  # as long and opaque as Graph's


def _error(status: int, code: str, message: str, **headers: str) -> Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": secrets.token_hex(8)}}}
    return Response(json.dumps(body), status, headers=headers, content_type="application/json")


class GraphServer:
    """The stand-in on a free loopback port, in a thread; `url` is what HELPDESK_GRAPH_URL is set to."""

    def __init__(self, oauth: OAuthServer) -> None:
        self.oauth = oauth
        self.mailboxes: dict[str, _Mailbox] = {}
        self.sent: list[Sent] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for the tests
        self._lock = threading.RLock()
        self._seq = 0
        self._generation = 1
        self._rounds: dict[str, list[dict[str, Any]]] = {}  # skiptoken -> the round's remaining entries
        self._throttle: list[float] = []
        self._moves_held = False
        self.move_attempted = threading.Event()
        self._release = threading.Event()
        self.app = self._make_app()
        self._server = make_server(HOST, 0, self.app, threaded=True, request_handler=_QuietHandler)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def root(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1.0"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # -- test controls ----------------------------------------------------------------------------

    def add_mailbox(self, user: str) -> None:
        with self._lock:
            self.mailboxes[user.lower()] = _Mailbox({k: _Folder(_new_id(), name) for k, name in WELL_KNOWN.items()})

    def deliver(self, user: str, raw: bytes, folder: str = "inbox") -> str:
        """Mail arrives in the user's folder; its Graph id."""
        with self._lock:
            target = self.mailboxes[user.lower()].folder(folder)
            assert target is not None
            return self._add(target, raw)

    def messages(self, user: str, folder_name: str) -> list[bytes]:
        """The MIME of the mail in the folder with this display name (none if there is no such folder)."""
        with self._lock:
            found = [f for f in self.mailboxes[user.lower()].folders.values() if f.name == folder_name]
            return [raw for f in found for raw in f.messages.values()]

    def throttle(self, count: int = 1, retry_after: float = 1) -> None:
        with self._lock:
            self._throttle.extend([retry_after] * count)

    def expire_sync_states(self) -> None:
        with self._lock:
            self._generation += 1
            self._rounds.clear()

    def hold_moves(self) -> None:
        self._moves_held = True
        self.move_attempted.clear()
        self._release.clear()

    def release_moves(self) -> None:
        self._moves_held = False
        self._release.set()

    # -- the store --------------------------------------------------------------------------------

    def _add(self, folder: _Folder, raw: bytes) -> str:
        message_id = _new_id()
        self._seq += 1
        folder.messages[message_id] = raw
        folder.log.append((self._seq, "created", message_id))
        return message_id

    def _remove(self, folder: _Folder, message_id: str) -> bytes:
        self._seq += 1
        folder.log.append((self._seq, "removed", message_id))
        return folder.messages.pop(message_id)

    def _token(self, **state: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps({"g": self._generation, **state}).encode()).decode()

    def _state(self, token: str) -> dict[str, Any] | None:
        """A state token's content; None when it is from before the last expiry, or no token of ours."""
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, binascii.Error):
            return None
        return state if isinstance(state, dict) and state.get("g") == self._generation else None

    def _round(self, folder: _Folder, since: int | None) -> list[dict[str, Any]]:
        """A new round's entries: every message now in the folder, or what changed after `since`."""
        entry = {"@odata.type": "#microsoft.graph.message"}
        if since is None:
            return [{**entry, "@odata.etag": f'W/"{i[:8]}"', "id": i} for i in folder.messages]
        created_before = {i for seq, kind, i in folder.log if kind == "created" and seq <= since}
        entries: list[dict[str, Any]] = []
        for seq, kind, message_id in folder.log:
            if seq <= since:
                continue
            if kind == "created" and message_id in folder.messages:
                entries.append({**entry, "@odata.etag": f'W/"{message_id[:8]}"', "id": message_id})
            elif kind == "removed" and message_id in created_before:
                entries.append({**entry, "id": message_id, "@removed": {"reason": "deleted"}})
        return entries

    # -- the Flask app ----------------------------------------------------------------------------

    def _authorize(self, user: str) -> Response | None:
        self.requests.append((request.method, request.path, 0))
        with self._lock:
            if self._throttle:
                wait = self._throttle.pop(0)
                return _error(429, "TooManyRequests", "Please retry after the time given.", **{"Retry-After": f"{wait:g}"})
        header = request.headers.get("Authorization", "")
        token = self.oauth.introspect(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else {"active": False}
        if not token.get("active"):
            return _error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.",
                          **{"WWW-Authenticate": 'Bearer realm=""'})  # fmt: skip
        if str(token.get("username", "")).lower() != user.lower() or user.lower() not in self.mailboxes:
            return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return None

    def _make_app(self) -> Flask:
        app = Flask("graph-stand-in")
        prefix = "/v1.0/users/<user>"

        @app.after_request
        def note_status(answer: Response) -> Response:
            if self.requests and self.requests[-1][2] == 0:
                method, path, _ = self.requests[-1]
                self.requests[-1] = (method, path, answer.status_code)
            return answer

        @app.route(f"{prefix}/mailFolders", methods=["GET", "POST"])
        def folders(user: str) -> Any:
            if (refused := self._authorize(user)) is not None:
                return refused
            with self._lock:
                mailbox = self.mailboxes[user.lower()]
                if request.method == "POST":
                    name = str((request.get_json(silent=True) or {}).get("displayName") or "")
                    if not name:
                        return _error(400, "ErrorInvalidRequest", "displayName is required.")
                    if any(f.name.casefold() == name.casefold() for f in mailbox.folders.values()):
                        return _error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
                    folder = mailbox.folders[_new_id()] = _Folder(_new_id(), name)
                    return _folder_json(folder), 201
                return {"@odata.context": f"{self.url}/$metadata#users('{user}')/mailFolders",
                        "value": [_folder_json(f) for f in mailbox.folders.values()]}  # fmt: skip

        @app.get(f"{prefix}/mailFolders/<folder_key>/messages/delta")
        def delta(user: str, folder_key: str) -> Any:
            if (refused := self._authorize(user)) is not None:
                return refused
            size = _page_size(request.headers.get("Prefer", ""))
            with self._lock:
                folder = self.mailboxes[user.lower()].folder(folder_key)
                if folder is None:
                    return _error(404, "ErrorInvalidIdMalformed", "The folder does not exist.")
                skip, deltatoken = request.args.get("$skiptoken"), request.args.get("$deltatoken")
                if skip is not None:
                    state = self._state(skip)
                    entries = self._rounds.get(skip) if state is not None else None
                    if entries is None:
                        return _error(410, "SyncStateNotFound", "The sync state generation is not found.")
                    upto = int(state["u"])  # type: ignore[index]
                else:
                    since = None
                    if deltatoken is not None:
                        state = self._state(deltatoken)
                        if state is None:
                            return _error(410, "SyncStateNotFound", "The sync state generation is not found.")
                        since = int(state["u"])
                    upto = self._seq
                    entries = self._round(folder, since)
                page, rest = entries[:size], entries[size:]
                base = f"{self.url}/users/{user}/mailFolders/{folder_key}/messages/delta"
                answer: dict[str, Any] = {"@odata.context": f"{self.url}/$metadata#Collection(message)", "value": page}
                if rest:
                    token = self._token(u=upto, n=secrets.token_hex(4))
                    self._rounds[token] = rest
                    answer["@odata.nextLink"] = f"{base}?$skiptoken={token}"
                else:
                    answer["@odata.deltaLink"] = f"{base}?$deltatoken={self._token(u=upto)}"
            return Response(json.dumps(answer), 200, content_type="application/json",
                            headers={"Preference-Applied": f"odata.maxpagesize={size}"})  # fmt: skip

        @app.get(f"{prefix}/messages/<message_id>/$value")
        def mime(user: str, message_id: str) -> Any:
            if (refused := self._authorize(user)) is not None:
                return refused
            with self._lock:
                folder = self.mailboxes[user.lower()].find(message_id)
                if folder is None:
                    return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
                return Response(folder.messages[message_id], 200, content_type="text/plain")

        @app.post(f"{prefix}/messages/<message_id>/move")
        def move(user: str, message_id: str) -> Any:
            if (refused := self._authorize(user)) is not None:
                return refused
            if self._moves_held:
                self.move_attempted.set()
                self._release.wait(60)
                return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
            with self._lock:
                mailbox = self.mailboxes[user.lower()]
                source = mailbox.find(message_id)
                target = mailbox.folder(str((request.get_json(silent=True) or {}).get("destinationId") or ""))
                if source is None:
                    return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
                if target is None:
                    return _error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
                new_id = self._add(target, self._remove(source, message_id))
                return {"@odata.type": "#microsoft.graph.message", "id": new_id, "parentFolderId": target.id}, 201

        @app.post(f"{prefix}/sendMail")
        def send_mail(user: str) -> Any:
            if (refused := self._authorize(user)) is not None:
                return refused
            if request.mimetype != "text/plain":
                return _error(400, "RequestBodyRead", "A MIME message is sent as base64 with Content-Type text/plain.")
            try:
                raw = base64.b64decode(request.get_data(), validate=True)
            except (ValueError, binascii.Error):
                return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
            with self._lock:
                self.sent.append(Sent(user, raw))
                self._add(self.mailboxes[user.lower()].folders["sentitems"], raw)
            return Response(status=202)

        return app


def _folder_json(folder: _Folder) -> dict[str, Any]:
    return {
        "id": folder.id, "displayName": folder.name, "parentFolderId": "AAMkroot", "childFolderCount": 0,
        "unreadItemCount": 0, "totalItemCount": len(folder.messages), "isHidden": False,
    }  # fmt: skip


def _page_size(prefer: str) -> int:
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, int(value))
    return DEFAULT_PAGE


@dataclass
class MicrosoftStandIns:
    """An HTTPS authorization server (msal talks only to https authorities; trust `cert`) and Graph beside it."""

    oauth: OAuthServer
    graph: GraphServer
    cert: Path

    def mailbox(self, user: str, client_id: str, secret: str, *, name: str = "graph",
                flow: OAuthFlow = OAuthFlow.APP) -> MailboxSettings:  # fmt: skip
        """Settings as `helpdesk.config` builds them for a [[mailboxes]] table with transport = "graph"."""
        scopes = ("https://graph.microsoft.com/.default",) if flow is OAuthFlow.APP else (
            "https://graph.microsoft.com/Mail.ReadWrite", "https://graph.microsoft.com/Mail.Send")  # fmt: skip
        settings = OAuthSettings(OAuthProvider.MICROSOFT, client_id, secret, flow=flow, tenant="contoso",
                                 authority=self.oauth.authority("contoso"), scopes=scopes)  # fmt: skip
        return MailboxSettings(name=name, host="graph", port=143, user=user, password="", address=user,
                               auth=AuthKind.OAUTH2, oauth=settings, transport=Transport.GRAPH,
                               graph_url=self.graph.url)  # fmt: skip


@contextmanager
def microsoft_stand_ins() -> Iterator[MicrosoftStandIns]:
    where = service_dir("helpdesk-graph-", None)
    cert, key = where / "cert.pem", where / "key.pem"
    make_self_signed_cert(cert, key)
    oauth = OAuthServer(cert=(cert, key))
    oauth.start()
    graph = GraphServer(oauth)
    graph.start()
    try:
        yield MicrosoftStandIns(oauth, graph, cert)
    finally:
        graph.stop()
        oauth.stop()
        remove_dir(where)
