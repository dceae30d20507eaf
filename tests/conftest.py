"""Shared fixtures: real IMAP, SMTP and PostgreSQL servers on loopback, databases, the corpus.

Fixture names here are an API other test modules depend on; keep them stable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import db
from tests.servers import require, running_as_root
from tests.servers.imap import DovecotInstance, DovecotServer, ImapServer, PymapServer, dovecot_binary, pymap_binary
from tests.servers.oauth import OAuthServer
from tests.servers.postgres import OS_USER as PG_OS_USER
from tests.servers.postgres import PostgresCluster, postgres_bindir
from tests.servers.smtp import SmtpSink

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


# -- IMAP ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot_instance() -> Iterator[DovecotInstance]:
    """One Dovecot for the whole session (stopping it takes ~1 s); tests get fresh accounts."""
    yield from _started_dovecot()


def _started_dovecot(introspection_url: str | None = None) -> Iterator[DovecotInstance]:
    binary = dovecot_binary()
    require("Dovecot", binary is not None, "no `dovecot` binary (apt-get install dovecot-imapd)")
    assert binary is not None
    instance = DovecotInstance(binary, introspection_url=introspection_url)
    instance.start()
    yield instance
    instance.close()


@pytest.fixture
def dovecot(dovecot_instance: DovecotInstance) -> DovecotServer:
    """A fresh, empty Dovecot account; the server is (re)started if an earlier test stopped it."""
    dovecot_instance.start()
    return dovecot_instance.new_account()


@pytest.fixture
def pymap_server() -> Iterator[PymapServer]:
    """A fresh in-memory pymap (starts in ~0.2 s); a restart empties it and changes UIDVALIDITY."""
    binary = pymap_binary()
    require("pymap", binary is not None, "no `pymap` script beside the Python interpreter or on PATH")
    assert binary is not None
    server = PymapServer(binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["dovecot", "pymap"], ids=["dovecot", "pymap"])
def imap_server(request: pytest.FixtureRequest) -> ImapServer:
    fixture = "dovecot" if request.param == "dovecot" else "pymap_server"
    server = request.getfixturevalue(fixture)
    assert isinstance(server, ImapServer)
    return server


# -- SMTP ----------------------------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


# -- OAuth2 (XOAUTH2 logins) ---------------------------------------------------------


@pytest.fixture(scope="session")
def oauth_session_server() -> Iterator[OAuthServer]:
    server = OAuthServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def oauth_server(oauth_session_server: OAuthServer) -> OAuthServer:
    """The local authorization server, with the default token lifetime again; tests add their own clients."""
    oauth_session_server.expires_in = 3600
    oauth_session_server.login_user = "helpdesk"
    return oauth_session_server


@pytest.fixture(scope="session")
def oauth_dovecot_instance(oauth_session_server: OAuthServer) -> Iterator[DovecotInstance]:
    """A Dovecot that also takes XOAUTH2/OAUTHBEARER, checking tokens at the local server."""
    yield from _started_dovecot(oauth_session_server.introspection_url(with_credentials=True))


@pytest.fixture
def oauth_dovecot(oauth_dovecot_instance: DovecotInstance) -> DovecotServer:
    oauth_dovecot_instance.start()
    return oauth_dovecot_instance.new_account()


@pytest.fixture
def oauth_smtp_sink(oauth_server: OAuthServer) -> Iterator[SmtpSink]:
    """An SMTP sink that takes mail only after AUTH XOAUTH2 with a token the local server vouches for."""
    sink = SmtpSink(introspection_url=oauth_server.introspection_url())
    sink.start()
    yield sink
    sink.stop()


# -- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = postgres_bindir()
    require("PostgreSQL", bindir is not None, "no initdb/pg_ctl found (set HELPDESK_PG_BINDIR or install postgresql)")
    if running_as_root():
        require("PostgreSQL", _user_exists(PG_OS_USER), f"running as root needs the `{PG_OS_USER}` OS user")
    assert bindir is not None
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database in the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    yield cluster.url(name)
    cluster.drop_database(name)


@pytest.fixture
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A migrated, empty database on SQLite and on PostgreSQL."""
    yield from _migrated_sessions(database_url)


@pytest.fixture
def sqlite_session_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated, empty SQLite database, for tests that need no PostgreSQL run."""
    yield from _migrated_sessions(f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}")


@pytest.fixture
def pg_session_factory(postgres_cluster: PostgresCluster) -> Iterator[sessionmaker[Session]]:
    """A migrated, empty PostgreSQL database, for what only PostgreSQL has (text search configurations...)."""
    name = postgres_cluster.create_database()
    yield from _migrated_sessions(postgres_cluster.url(name))
    postgres_cluster.drop_database(name)


def _migrated_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        yield db.make_sessionmaker(engine)
    finally:
        engine.dispose()


# -- corpus and browser --------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The corpus of real-world mail: $HELPDESK_CORPUS_DIR, else ../shared/corpus beside the repo."""
    configured = os.environ.get("HELPDESK_CORPUS_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"
    require("mail corpus", path.is_dir(), f"{path} is not a directory (set HELPDESK_CORPUS_DIR)")
    return path


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's Chromium, for Playwright's `executable_path` (never `playwright install`)."""
    found = next((shutil.which(name) for name in CHROMIUM_CANDIDATES if shutil.which(name)), None)
    require("Chromium", found is not None, "no `chromium` binary (apt-get install chromium)")
    assert found is not None
    return found


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
