"""Microsoft Graph as a mail transport, for tenants that turned IMAP and SMTP off.

Only these endpoints are used (v1.0), always under /users/{user} so that a shared mailbox works with
the app's own token (the README lists them with the permissions a tenant grants):

- GET  mailFolders, POST mailFolders                 find (or create) the Processed folder by display name
- GET  mailFolders/{folder}/messages/delta           what arrived, page by page (@odata.nextLink), ending
                                                     with the @odata.deltaLink the next round starts from
- GET  messages/{id}/$value                          the message's MIME, byte for byte
- POST messages/{id}/move                            into Processed, only after the mail is stored
- POST sendMail (Content-Type: text/plain)           our rendered MIME, base64: exactly our bytes go out

Tokens come from mailgateway.oauth (app-only client credentials or a delegated refresh token). A 401 is
answered by a fresh token once; 429 and 503 wait as long as Retry-After says; an expired delta state
(410, or the code syncStateNotFound) is SyncStateExpired and the caller reads the folder from scratch.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from helpdesk.core.settings import MailboxSettings
from helpdesk.mailgateway import oauth

# (Defined apart so that an IMAP-only poller need not import requests; named here as before.)
from helpdesk.mailgateway.grapherrors import GraphError as GraphError
from helpdesk.mailgateway.grapherrors import GraphLoginFailed as GraphLoginFailed
from helpdesk.mailgateway.grapherrors import SyncStateExpired as SyncStateExpired

log = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds to connect and for each read
PAGE_SIZE = 50  # messages per delta page (Prefer: odata.maxpagesize)
RETRIES = 5  # answers of 429/503/504 waited out per request before it counts as failed
MAX_WAIT = 120.0  # the longest Retry-After honoured; a longer one fails the request (the watcher backs off)
THROTTLED = {429, 503, 504}
# Folder names Graph knows without an id; any other folder is found by its display name.
WELL_KNOWN = {"inbox", "junkemail", "archive", "drafts", "sentitems", "deleteditems"}


@dataclass(frozen=True)
class DeltaPage:
    ids: list[str]  # messages added to (or changed in) the folder
    next_link: str | None  # more of this round
    delta_link: str | None  # the round is over; the next one starts here


class GraphClient:
    """One mailbox's Graph calls; `user` is its address (a shared mailbox's, with the app's token)."""

    def __init__(self, mailbox: MailboxSettings, *, timeout: float = TIMEOUT) -> None:
        assert mailbox.oauth is not None  # the settings make sure
        self.mailbox = mailbox
        self.timeout = timeout
        self.base = f"{mailbox.graph_url.rstrip('/')}/users/{quote(mailbox.user, safe='@')}"
        self._source = oauth.source_for(mailbox.name, mailbox.oauth)
        self._http = requests.Session()
        self._reported = False  # success is recorded once per client (and again after a failure)
        self._folders: dict[str, str] = {}  # display name -> id, for this client's life

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the endpoints ----------------------------------------------------------------------------

    def folder_id(self, name: str, *, create: bool = False) -> str:
        """The id of the top-level folder `name` (a well-known name as it is); created if missing and asked to."""
        if name.lower() in WELL_KNOWN:
            return name.lower()
        if name in self._folders:
            return self._folders[name]
        self._folders[name] = found = self._find_folder(name, create)
        return found

    def _find_folder(self, name: str, create: bool) -> str:
        url: str | None = f"{self.base}/mailFolders?$top=100&includeHiddenFolders=true"
        while url:
            page = self._request("GET", url).json()
            for folder in page.get("value", []):
                if str(folder.get("displayName", "")).casefold() == name.casefold():
                    return str(folder["id"])
            url = page.get("@odata.nextLink")
        if not create:
            raise GraphError(f"{self.mailbox.name}: no folder {name!r} in {self.mailbox.user}")
        try:
            made = self._request("POST", f"{self.base}/mailFolders", json={"displayName": name}).json()
        except GraphError as exc:
            if exc.status != 409:
                raise
            return self._find_folder(name, create=False)  # another process made it meanwhile
        log.info("%s: created folder %r", self.mailbox.name, name)
        return str(made["id"])

    def delta(self, link: str | None, folder: str) -> DeltaPage:
        """One page of the folder's delta round: from `link`, or the first page of a full round."""
        url = link or f"{self.base}/mailFolders/{quote(folder, safe='')}/messages/delta?$select=id"
        page = self._request("GET", url, headers={"Prefer": f"odata.maxpagesize={PAGE_SIZE}"}).json()
        # "@removed" entries: mail moved or deleted since the last round (ours, once processed).
        ids = [str(item["id"]) for item in page.get("value", []) if "@removed" not in item and item.get("id")]
        return DeltaPage(ids, page.get("@odata.nextLink"), page.get("@odata.deltaLink"))

    def mime(self, message_id: str) -> bytes | None:
        """The message's MIME as Exchange keeps it; None if it is gone (moved or deleted meanwhile)."""
        try:
            return self._request("GET", f"{self._message(message_id)}/$value").content
        except GraphError as exc:
            if exc.status == 404:
                return None
            raise

    def move(self, message_id: str, folder_id: str) -> None:
        """Into `folder_id`; a message already gone (404) counts as moved."""
        try:
            self._request("POST", f"{self._message(message_id)}/move", json={"destinationId": folder_id})
        except GraphError as exc:
            if exc.status != 404:
                raise

    def send_mime(self, raw: bytes) -> None:
        """Send our rendered mail as it is: recipients are taken from its To, Cc and Bcc headers."""
        self._request("POST", f"{self.base}/sendMail", data=base64.b64encode(raw), headers={"Content-Type": "text/plain"})

    # -- one request ------------------------------------------------------------------------------

    def _message(self, message_id: str) -> str:
        return f"{self.base}/messages/{quote(message_id, safe='')}"

    def _token(self) -> str:
        try:
            return self._source.access_token()
        except oauth.TokenError as exc:
            self._reported = False
            raise GraphLoginFailed(f"no OAuth2 token for Microsoft Graph as {self.mailbox.user!r}: {exc}") from None

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        refreshed = False
        waits = 0
        while True:
            headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {self._token()}"}
            kwargs["headers"] = headers
            try:
                answer = self._http.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
            except requests.RequestException as exc:
                raise GraphError(f"Microsoft Graph {method} {_path(url)}: {type(exc).__name__}: {_one_line(exc)}") from None
            if answer.status_code < 400:
                self._logged_in()
                return answer
            error = _error(answer)
            if answer.status_code == 401 and not refreshed:
                self._source.login_failed(error.code or "401")  # revoked or expired early: a fresh token, once
                refreshed = True
                continue
            if answer.status_code in THROTTLED and waits < RETRIES:
                wait = _retry_after(answer)
                if wait <= MAX_WAIT:
                    waits += 1
                    log.info("%s: Graph answered %d; trying again in %.0f s", self.mailbox.name, answer.status_code, wait)
                    time.sleep(wait)
                    continue
            raise self._failure(method, url, answer.status_code, error)

    def _failure(self, method: str, url: str, status: int, error: _Error) -> GraphError:
        text = f"Microsoft Graph {method} {_path(url)}: {status} {error.code}: {error.message}".rstrip(": ")
        if status in (401, 403):
            text = f"{text} (as {self.mailbox.user!r})"
            self._reported = False
            oauth.login_refused(self.mailbox.name, self.mailbox.auth, text)
            return GraphLoginFailed(text, status=status, code=error.code)
        if status == 410 or error.code.lower() == "syncstatenotfound":
            return SyncStateExpired(text, status=status, code=error.code)
        return GraphError(text, status=status, code=error.code)

    def _logged_in(self) -> None:
        if not self._reported:
            self._reported = True
            self._source.logged_in()


@dataclass(frozen=True)
class _Error:
    code: str
    message: str


def _error(answer: requests.Response) -> _Error:
    """Graph's error body: {"error": {"code": ..., "message": ...}}; anything else as a short excerpt."""
    try:
        body = answer.json().get("error") or {}
        return _Error(str(body.get("code") or ""), " ".join(str(body.get("message") or "").split())[:300])
    except (ValueError, AttributeError):
        return _Error("", " ".join(answer.text.split())[:200] or answer.reason)


def _retry_after(answer: requests.Response) -> float:
    """Retry-After in seconds (Graph sends seconds); a missing or odd value: a short pause."""
    try:
        return max(0.0, float(answer.headers.get("Retry-After", "")))
    except ValueError:
        return 5.0


def _path(url: str) -> str:
    """The URL without its query (delta and skip tokens are long and say nothing to an admin)."""
    return url.split("?", 1)[0]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
