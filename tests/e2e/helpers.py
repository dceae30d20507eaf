"""Run the real ``helpdesk`` command as a subprocess, configured only through HELPDESK_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink

HELPDESK = str(Path(sys.executable).with_name("helpdesk"))


def helpdesk_env(data_dir: Path, database_url: str, imap: ImapServer | None = None, smtp: SmtpSink | None = None,
                 **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        HELPDESK_DATA_DIR=str(data_dir),
        HELPDESK_DATABASE_URL=database_url,
        HELPDESK_ADDRESS="help@example.org",
        HELPDESK_SECRET_KEY="test-secret",
    )
    if imap is not None:
        env.update(
            HELPDESK_IMAP_HOST=imap.host,
            HELPDESK_IMAP_PORT=str(imap.port),
            HELPDESK_IMAP_USER=imap.user,
            HELPDESK_IMAP_PASSWORD=imap.password,
            HELPDESK_IMAP_TLS="none",
        )
    if smtp is not None:
        env.update(HELPDESK_SMTP_HOST=smtp.host, HELPDESK_SMTP_PORT=str(smtp.port), HELPDESK_SMTP_TLS="none")
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str, input: bytes | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([HELPDESK, *args], env=env, input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"helpdesk {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout.decode()}\n"
            f"stderr:\n{proc.stderr.decode()}"
        )
    return proc


def run_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, *args).stdout)


def ingest_all(env: dict[str, str], folder: Path, *mails: bytes) -> str:
    """The mails through one `helpdesk ingest FILE...` (one start-up, ~1 s, for all), stored and processed
    in this order; its output."""
    files = [folder / f"ingest-{n}.eml" for n in range(len(mails))]
    for path, raw in zip(files, mails, strict=True):
        path.write_bytes(raw)
    return run(env, "ingest", *map(str, files)).stdout.decode()


T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """The predicate's first truthy value, checked every 0.3 s until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
