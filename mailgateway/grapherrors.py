"""Microsoft Graph's failures, apart from its client: the watcher catches them for every mailbox, and an
IMAP-only poller should not import ``requests`` (~0.04 s of its start) to name them."""

from __future__ import annotations


class GraphError(Exception):
    """A request failed (the service, the network or the answer); the message is one line, no token."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class GraphLoginFailed(GraphError):
    """No token, or Graph refuses even a fresh one (401) or the app may not open this mailbox (403)."""


class SyncStateExpired(GraphError):
    """The delta link is no longer known to Graph: the folder has to be read again from scratch."""
