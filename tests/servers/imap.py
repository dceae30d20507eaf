"""Dovecot and pymap, started for real on loopback, with a small client for test set-up.

The helper methods (`append`, `uids`, ...) use imapclient directly, not the code
under test, so a test can check what the helpdesk did from the outside.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from imapclient import IMAPClient

from helpdesk.core.settings import MailboxSettings, TlsMode
from tests.servers import (
    chown_tree,
    drop_privileges_prefix,
    free_port,
    remove_dir,
    running_as_root,
    service_dir,
    terminate,
    wait_for_port,
)

HOST = "127.0.0.1"
ACCOUNTS = 5000  # Dovecot accounts per test session
PASSWORD = "secret"


class ImapServer:
    """One IMAP account on a running server, plus ways to stop and restart that server."""

    kind: str = ""

    def __init__(self, port: int, user: str, password: str = PASSWORD) -> None:
        self.host = HOST
        self.port = port
        self.user = user
        self.password = password

    # -- set-up and inspection, over a fresh connection each time ------------------

    @contextmanager
    def client(self) -> Iterator[IMAPClient]:
        conn = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        try:
            # Without it each APPEND waits ~40 ms for a delayed ACK.
            conn.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.login(self.user, self.password)
            yield conn
        finally:
            try:
                conn.logout()
            except Exception:
                conn.shutdown()

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        self.append_many([raw], folder)

    def append_many(self, raws: Iterable[bytes], folder: str = "INBOX") -> None:
        with self.client() as conn:
            if folder != "INBOX" and not conn.folder_exists(folder):  # INBOX always exists
                conn.create_folder(folder)
            for raw in raws:
                conn.append(folder, raw)

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as conn:
            conn.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in conn.search("ALL"))

    def fetch_all(self, folder: str = "INBOX") -> list[bytes]:
        """Every message's raw bytes in UID order, without setting \\Seen."""
        with self.client() as conn:
            conn.select_folder(folder, readonly=True)
            uids = sorted(conn.search("ALL"))
            if not uids:
                return []
            data = conn.fetch(uids, ["BODY.PEEK[]"])
            return [bytes(data[uid][b"BODY[]"]) for uid in uids]

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client() as conn:
            conn.select_folder(folder, readonly=True)
            uids = conn.search("ALL")
            if not uids:
                return {}
            return {int(uid): tuple(d[b"FLAGS"]) for uid, d in conn.fetch(uids, ["FLAGS"]).items()}

    def folders(self) -> list[str]:
        with self.client() as conn:
            return [name for _flags, _sep, name in conn.list_folders()]

    def mailbox_settings(self, **overrides: object) -> MailboxSettings:
        settings = MailboxSettings(
            name=self.kind,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            tls=TlsMode.NONE,
            folder="INBOX",
            processed_folder="Processed",
            address="help@example.org",
        )
        return dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]

    # -- lifecycle -----------------------------------------------------------------

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.user}@{self.host}:{self.port}>"


def _terminate_group(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Stop a server started in its own session, and every process it forked.

    Dovecot's master exits on SIGTERM but leaves running imap processes serving
    their clients; a test that stops the server expects those connections to drop.
    """
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            continue


# -- Dovecot -------------------------------------------------------------------------

DOVECOT_CONFIG = """\
instance_name = helpdesk-test-{port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
auth_failure_delay = 0
mail_location = maildir:{d}/mail/%u:LAYOUT=fs
# throwaway mail: no fsync per APPEND (several times faster)
mail_fsync = never
# Two first logins of a fresh account at once (the watcher and a test's APPEND) deadlock on the
# mailbox list index: with fcntl locks Dovecot panics on EDEADLK and drops the connection, with
# flock both hang. The tests don't need that index.
mailbox_list_index = no
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {d}/users
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
  default_fields = home={d}/mail/%u uid={uid} gid={gid}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: after one failed login it delays every login from the IP by seconds.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


# Dovecot 2.3's oauth2 passdb (checked against doveconf and its PasswordDatabase.oauth2 doc, and
# logged in to here). Without a tokeninfo_url it asks the introspection endpoint about every token:
# `introspection_mode = post` sends `token=...` as a form, with HTTP Basic auth taken from the
# user:password in the URL (RFC 7662 wants the resource server to authenticate). The login is
# refused unless `active` is true and `username` equals the user named in the XOAUTH2 string
# (normalised by username_format, %Lu by default: lower case). The password passdb keeps serving
# PLAIN/LOGIN through `mechanisms = plain login`. Auth caching is off by default (auth_cache_size
# = 0), so a revoked token is refused at the very next login.
OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
"""
OAUTH2_CONFIG = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None
    )


class DovecotInstance:
    """One Dovecot master process with a throwaway config; accounts are added on the fly."""

    def __init__(
        self,
        binary: str,
        extra_config: str = "",
        tls: bool = False,
        introspection_url: str | None = None,
        introspection_ca: Path | None = None,
    ) -> None:
        """`extra_config` is appended to the config, e.g. to hide capabilities.

        With `tls`, the plain port offers STARTTLS and `tls_port` speaks implicit TLS,
        both with a fresh self-signed certificate for 127.0.0.1 in `cert_file`.

        With `introspection_url` (tests.servers.oauth, credentials in the URL), Dovecot also takes
        XOAUTH2 and OAUTHBEARER logins and checks each bearer token there itself (OAUTH2_PASSDB);
        `introspection_ca` is the certificate to trust when that URL is https.
        """
        self.binary = binary
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        if running_as_root():
            self.os_user, self.os_group = "nobody", "nogroup"
        else:
            entry = pwd.getpwuid(os.geteuid())
            self.os_user = entry.pw_name
            self.os_group = _group_name(entry.pw_gid)
        self.dir = service_dir("helpdesk-dovecot-", self.os_user if running_as_root() else None)
        entry = pwd.getpwnam(self.os_user)
        self.cert_file = self.dir / "cert.pem"
        ssl_config = "ssl = no"
        if tls:
            make_self_signed_cert(self.cert_file, self.dir / "key.pem")
            ssl_config = f"ssl = yes\nssl_cert = <{self.cert_file}\nssl_key = <{self.dir / 'key.pem'}"
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(
            DOVECOT_CONFIG.format(
                d=self.dir,
                ssl=ssl_config,
                port=self.port,
                tls_port=self.tls_port,
                user=self.os_user,
                group=self.os_group,
                uid=entry.pw_uid,
                gid=entry.pw_gid,
                oauth2_mechanisms=" xoauth2 oauthbearer" if introspection_url else "",
                oauth2_passdb=OAUTH2_PASSDB.format(d=self.dir) if introspection_url else "",
            )
            + extra_config
        )
        if introspection_url:
            trust = f"tls_ca_cert_file = {introspection_ca}\n" if introspection_ca else ""
            (self.dir / "oauth2.conf.ext").write_text(OAUTH2_CONFIG.format(url=introspection_url) + trust)
        self.users_file = self.dir / "users"
        # Dovecot caches the passwd-file by mtime, so accounts added within the same
        # second go unseen: write every account a test session may need up front.
        self.users_file.write_text(
            "".join(f"{self._user_name(n)}:{{PLAIN}}{PASSWORD}:::::: nodelay\n" for n in range(1, ACCOUNTS + 1))
        )
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir()
        if running_as_root():
            chown_tree(self.dir, self.os_user)
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    def start(self) -> None:
        if self.running:
            return
        cmd = [*drop_privileges_prefix(self.os_user, self.os_group), self.binary, "-F", "-c", str(self.config)]
        with (self.dir / "stderr.log").open("ab") as stderr:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
            )
        try:
            wait_for_port(HOST, self.port, timeout=15, alive=lambda: self.running)
        except Exception as exc:
            raise RuntimeError(f"dovecot did not start: {exc}; log: {self.log_tail()}") from exc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _terminate_group(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        remove_dir(self.dir)

    def new_account(self) -> DovecotServer:
        """A user nobody has logged in as yet, so with an empty mailbox."""
        n = next(self._names)
        if n > ACCOUNTS:
            raise RuntimeError(f"all {ACCOUNTS} test accounts of this Dovecot are used up")
        return DovecotServer(self, self._user_name(n))

    @staticmethod
    def _user_name(n: int) -> str:
        return f"helpdesk{n}"

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for name in ("stderr.log", "dovecot.log"):
            log = self.dir / name
            if log.exists():
                text += log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def make_self_signed_cert(cert: Path, key: Path) -> None:
    """A throwaway certificate valid for 127.0.0.1 and localhost (needs the openssl CLI)."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


class DovecotServer(ImapServer):
    kind = "dovecot"

    def __init__(self, instance: DovecotInstance, user: str) -> None:
        super().__init__(instance.port, user)
        self.instance = instance

    @contextmanager
    def client(self) -> Iterator[IMAPClient]:
        try:
            with super().client() as conn:
                yield conn
        except Exception as exc:
            exc.add_note(f"dovecot log tail:\n{self.instance.log_tail()}")  # why the server hung up
            raise

    def stop(self) -> None:
        self.instance.stop()

    def start(self) -> None:
        self.instance.start()


# -- pymap ---------------------------------------------------------------------------


def pymap_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("pymap")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("pymap")


class PymapServer(ImapServer):
    """pymap's in-memory backend: each start is an empty mailbox with a new UIDVALIDITY."""

    kind = "pymap"

    def __init__(self, binary: str, user: str = "helpdesk") -> None:
        super().__init__(free_port(), user)
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        cmd = [
            self.binary,
            "--host", HOST,
            "--port", str(self.port),
            "--no-tls",
            "dict",
            "--demo-user", self.user,
            "--demo-password", self.password,
        ]  # fmt: skip
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr)
        try:
            wait_for_port(HOST, self.port, timeout=15, alive=lambda: self.proc is not None and self.proc.poll() is None)
        except Exception as exc:
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"pymap did not start: {exc}; output: {err}") from exc

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
