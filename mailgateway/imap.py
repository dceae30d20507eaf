"""One IMAP mailbox, spoken to through imapclient with the protocol quirks hidden.

What this wrapper takes care of, so its callers need not:
- fetches use BODY.PEEK[] so reading a mail never sets \\Seen;
- UID ranges "n:*" return the highest UID even when it is below n: filtered out;
- TCP_NODELAY on the socket, or APPEND/IDLE round trips stall on delayed ACKs;
- imapclient's idle_check() reads with a non-blocking socket and raises "unterminated
  line" when a response arrives split across TCP segments (imapclient issue #519,
  frequent with pymap): IDLE responses are read here with blocking line reads;
- server errors become the few exceptions below, each with one clear line of text.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import select
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from imapclient import DELETED, SEEN, IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from helpdesk.core.settings import AuthKind, MailboxSettings, TlsMode
from helpdesk.mailgateway import oauth

PROCESSED_KEYWORD = "$HelpdeskProcessed"
MAX_UID = 2**32 - 1
# RFC 2177: servers may drop an IDLE after 30 minutes; re-issue well before.
MAX_IDLE_SECONDS = 25 * 60
_NEW_MAIL = re.compile(rb"^\* \d+ (EXISTS|RECENT)\b", re.IGNORECASE)
_BYE = re.compile(rb"^\* BYE\b", re.IGNORECASE)


class ImapError(Exception):
    """Anything that went wrong talking to the IMAP server; the message is one line."""


class LoginFailed(ImapError):
    pass


class ServerUnreachable(ImapError):
    pass


class TlsFailed(ImapError):
    """STARTTLS was refused or its handshake failed."""


class FolderMissing(ImapError):
    pass


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None
    exists: int


class MailboxClient:
    def __init__(self, settings: MailboxSettings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._conn: IMAPClient | None = None
        self._selected: str | None = None
        self._permanent_flags: tuple[bytes, ...] = ()

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- session ------------------------------------------------------------------

    def connect(self) -> None:
        """Open a new session; any previous one is dropped (a reconnect after a failure)."""
        if self._conn is not None:
            self._abandon(self._conn)
        s = self.settings
        context = ssl.create_default_context() if s.tls is not TlsMode.NONE else None
        try:
            conn = IMAPClient(
                s.host, s.port, ssl=s.tls is TlsMode.SSL, ssl_context=context, timeout=self.timeout
            )
        except ssl.SSLError as exc:
            raise ServerUnreachable(f"TLS handshake with IMAP server {self._where} failed: {_reason(exc)}") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ServerUnreachable(f"cannot reach IMAP server {self._where}: {_reason(exc)}") from None
        try:
            conn.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.tls is TlsMode.STARTTLS:
                try:
                    conn.starttls(context)
                except (IMAPClientError, ssl.SSLError) as exc:
                    raise TlsFailed(f"STARTTLS with IMAP server {self._where} failed: {_reason(exc)}") from None
            if s.auth is AuthKind.OAUTH2:
                self._oauth2_login(conn)
            else:
                try:
                    conn.login(s.user, s.password)
                except LoginError as exc:
                    refused = f"IMAP login as {s.user!r} on {self._where} was refused: {_reason(exc)}"
                    oauth.login_refused(s.name, s.auth, refused)
                    raise LoginFailed(refused) from None
        except ImapError:
            _shutdown(conn)
            raise
        except (OSError, imaplib.IMAP4.abort) as exc:
            _shutdown(conn)
            raise ServerUnreachable(f"connection to IMAP server {self._where} lost: {_reason(exc)}") from None
        self._conn = conn
        self._selected = None
        if s.auth is AuthKind.PASSWORD:  # XOAUTH2 logins report through their token source
            oauth.login_succeeded(s.name, s.auth)

    def _oauth2_login(self, conn: IMAPClient) -> None:
        """AUTHENTICATE XOAUTH2; a refused token is replaced once by a freshly fetched one."""
        s = self.settings
        assert s.oauth is not None  # the settings make sure
        source = oauth.source_for(s.name, s.oauth)
        for attempt in (1, 2):
            try:
                token = source.access_token()
            except oauth.TokenError as exc:
                raise LoginFailed(f"no OAuth2 token for IMAP login as {s.user!r}: {exc}") from None
            try:
                conn.oauth2_login(s.user, token)
            except LoginError as exc:
                source.login_failed(_reason(exc))
                if attempt == 2:
                    refused = f"IMAP XOAUTH2 login as {s.user!r} on {self._where} was refused: {_reason(exc)}"
                    oauth.login_refused(s.name, s.auth, refused)
                    raise LoginFailed(refused) from None
            else:
                source.logged_in()
                return

    def close(self) -> None:
        conn, self._conn, self._selected = self._conn, None, None
        if conn is None:
            return
        try:
            conn.logout()
        except Exception:  # noqa: BLE001 - a connection that cannot say goodbye is closed all the same
            _shutdown(conn)

    def __enter__(self) -> MailboxClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def has_idle(self) -> bool:
        return bool(self._client().has_capability("IDLE"))

    # -- reading ------------------------------------------------------------------

    def select(self, folder: str) -> FolderState:
        conn = self._client()
        with self._errors(f"selecting folder {folder!r}"):
            try:
                info = conn.select_folder(folder)
            except IMAPClientError:
                if not conn.folder_exists(folder):
                    raise FolderMissing(f"IMAP folder {folder!r} does not exist on {self._where}") from None
                raise
        self._selected = folder
        self._permanent_flags = tuple(bytes(f) for f in info.get(b"PERMANENTFLAGS", ()))
        uidnext = info.get(b"UIDNEXT")
        return FolderState(
            uidvalidity=int(info[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(info.get(b"EXISTS", 0)),
        )

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid` in the selected folder, ascending."""
        if last_uid >= MAX_UID:
            return []
        conn = self._selected_client()
        with self._errors("searching for new mail"):
            # NOOP first: a server may only take in mail delivered since SELECT
            # when a command lets it report EXISTS (Dovecot does).
            conn.noop()
            found = conn.search(["UID", f"{last_uid + 1}:*"])
        # "n:*" with n past the highest UID still matches that highest UID.
        return sorted(uid for uid in (int(u) for u in found) if uid > last_uid)

    def uids_left(self, last_uid: int, processed_folder: str | None) -> list[int]:
        """UIDs up to `last_uid` not yet marked processed, ascending.

        With a processed folder that is every one still in the folder; when processed mail is only
        flagged, those without the flag `mark_processed` sets (our keyword, else \\Seen).
        """
        if last_uid <= 0:
            return []
        conn = self._selected_client()
        criteria: list[str | bytes] = ["UID", f"1:{min(last_uid, MAX_UID)}"]
        if processed_folder is None:
            flags = self._processed_flags()
            criteria += ["UNKEYWORD", PROCESSED_KEYWORD] if len(flags) > 1 else ["UNSEEN"]
        with self._errors("searching for mail left behind"):
            found = conn.search(criteria)
        return sorted(uid for uid in (int(u) for u in found) if uid <= last_uid)

    def fetch(self, uids: Sequence[int], batch: int = 100) -> Iterator[tuple[int, bytes]]:
        """(uid, raw message) in the order given, `batch` messages per round trip.

        UIDs that no longer exist (expunged meanwhile) are skipped.
        """
        conn = self._selected_client()
        for start in range(0, len(uids), batch):
            chunk = list(uids[start : start + batch])
            with self._errors("fetching mail"):
                data = conn.fetch(chunk, ["BODY.PEEK[]"])
            for uid in chunk:
                body = data.get(uid, {}).get(b"BODY[]")
                if body is not None:
                    yield uid, bytes(body)

    # -- writing ------------------------------------------------------------------

    def mark_processed(self, uids: Sequence[int], processed_folder: str | None) -> None:
        """Move processed mail out of the way, or only flag it when `processed_folder` is None.

        Nothing is ever deleted except the source copy of a move.
        """
        if not uids:
            return
        conn = self._selected_client()
        uid_list = list(uids)
        if processed_folder is None:
            with self._errors("flagging processed mail"):
                conn.add_flags(uid_list, self._processed_flags())
            return
        self._ensure_folder(processed_folder)
        with self._errors(f"moving mail to {processed_folder!r}"):
            if conn.has_capability("MOVE"):
                conn.move(uid_list, processed_folder)
            else:
                conn.copy(uid_list, processed_folder)
                conn.add_flags(uid_list, [DELETED])
                # Without UIDPLUS a plain EXPUNGE would also remove mail that someone
                # else marked deleted: leave the flagged originals instead.
                if conn.has_capability("UIDPLUS"):
                    conn.uid_expunge(uid_list)

    def append(self, folder: str, raw: bytes) -> None:
        conn = self._client()
        with self._errors(f"appending to {folder!r}"):
            try:
                conn.append(folder, raw)
            except IMAPClientError:
                if not conn.folder_exists(folder):
                    raise FolderMissing(f"IMAP folder {folder!r} does not exist on {self._where}") from None
                raise

    def _ensure_folder(self, folder: str) -> None:
        conn = self._client()
        with self._errors(f"creating folder {folder!r}"):
            if conn.folder_exists(folder):
                return
            try:
                conn.create_folder(folder)
            except IMAPClientError:
                # Another worker may have created it a moment ago.
                if not conn.folder_exists(folder):
                    raise

    def _processed_flags(self) -> list[bytes]:
        # \Seen works everywhere; the keyword only where the server keeps new keywords.
        if b"\\*" in self._permanent_flags:
            return [SEEN, PROCESSED_KEYWORD.encode()]
        return [SEEN]

    # -- waiting ------------------------------------------------------------------

    def wait_for_mail(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for news in the selected folder.

        True when new mail may have arrived (always, after a NOOP poll on servers
        without IDLE); False when the wait ran out quietly.
        """
        conn = self._selected_client()
        if not self.has_idle:
            time.sleep(max(0.0, timeout))
            with self._errors("polling for new mail"):
                conn.noop()
            return True
        deadline = time.monotonic() + min(max(0.0, timeout), MAX_IDLE_SECONDS)
        with self._errors("waiting for new mail (IDLE)"):
            try:
                news = self._start_idle(conn) or self._read_idle(conn, deadline)
            except BaseException:
                self._abandon(conn)
                raise
            _text, responses = conn.idle_done()
        return news or any(len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

    def _start_idle(self, conn: IMAPClient) -> bool:
        """Send IDLE and read up to the server's "+" continuation.

        Unlike imapclient's idle(), an untagged response that comes before the "+"
        (mail arriving at that very moment) is taken as news instead of an error.
        """
        imap = conn._imap
        tag = imap._command("IDLE")
        news = False
        while True:
            line = imap._get_response()
            if line is None:  # the continuation: the server is idling
                conn._idle_tag = tag
                return news
            if imap.tagged_commands.get(tag):
                typ, data = imap.tagged_commands.pop(tag)
                raise ImapError(f"IMAP server {self._where} refused IDLE: {_reason(imaplib.IMAP4.error(data[0]))}")
            news = news or bool(_NEW_MAIL.match(line))

    def _read_idle(self, conn: IMAPClient, deadline: float) -> bool:
        sock = conn.socket()
        while True:
            if not _has_buffered_input(conn):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    return False
            # A blocking read on the buffered file waits for the rest of a split line.
            line = conn._imap.readline()
            if not line:
                raise ServerUnreachable(f"IMAP server {self._where} closed the connection")
            if _BYE.match(line):
                raise ServerUnreachable(
                    f"IMAP server {self._where} closed the connection: {line.decode(errors='replace').strip()}"
                )
            if _NEW_MAIL.match(line):
                return True

    def _abandon(self, conn: IMAPClient) -> None:
        """Drop a connection whose protocol state is unknown; connect() starts afresh."""
        _shutdown(conn)
        if self._conn is conn:
            self._conn, self._selected = None, None

    # -- plumbing -----------------------------------------------------------------

    def _client(self) -> IMAPClient:
        if self._conn is None:
            raise ImapError(f"not connected to IMAP server {self._where}")
        return self._conn

    def _selected_client(self) -> IMAPClient:
        conn = self._client()
        if self._selected is None:
            raise ImapError(f"no folder selected on IMAP server {self._where}")
        return conn

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except ImapError:
            raise
        except (OSError, imaplib.IMAP4.abort) as exc:
            if self._conn is not None:
                self._abandon(self._conn)
            raise ServerUnreachable(f"connection to IMAP server {self._where} lost while {action}: {_reason(exc)}") from None
        except (IMAPClientError, imaplib.IMAP4.error) as exc:
            raise ImapError(f"IMAP server {self._where} refused {action}: {_reason(exc)}") from None


def _has_buffered_input(conn: IMAPClient) -> bool:
    """Whether a response is already read into the client's buffers (select() can't see it)."""
    sock = conn.socket()
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        # peek() returns what is buffered, or tries one non-blocking read when nothing is.
        return bool(conn._imap.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    finally:
        sock.settimeout(timeout)


def _reason(exc: BaseException) -> str:
    """The server's or the OS's words, without Python's bytes repr or line breaks."""
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    arg = exc.args[0] if exc.args else exc
    if isinstance(exc, OSError) and exc.strerror:
        arg = exc.strerror
    if isinstance(arg, bytes):
        text = arg.decode(errors="replace")
    else:
        text = str(arg)
        match = re.fullmatch(r".*?b(['\"])(.*)\1", text)
        if match:
            text = text[: match.start(1) - 1] + match.group(2)
    return " ".join(text.split()) or type(exc).__name__


def _shutdown(conn: IMAPClient) -> None:
    with contextlib.suppress(Exception):  # already gone: nothing left to close
        conn.shutdown()
