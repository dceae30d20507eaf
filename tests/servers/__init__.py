"""Real servers on loopback for the tests: Dovecot, pymap, aiosmtpd and PostgreSQL.

Nothing here is mocked; each helper starts the real program and stops it again.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

REQUIRE_ALL_ENV = "HELPDESK_REQUIRE_ALL"


def require(what: str, available: bool, reason: str) -> None:
    """Skip the test when `what` is missing, or fail when every part is required (CI)."""
    if available:
        return
    message = f"{what} unavailable: {reason}"
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ALL_ENV}=1)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    """Block until something accepts TCP connections on host:port.

    `alive`, when given, is a callable that returns False once the server process
    has died, so a crash is reported at once instead of after the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if alive is not None and not alive():
                raise RuntimeError(f"server for {host}:{port} exited before listening")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
            time.sleep(0.01)


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM, as a supervisor stops a service; killed if it is still there after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def running_as_root() -> bool:
    return os.geteuid() == 0


def service_dir(prefix: str, owner: str | None) -> Path:
    """A fresh temp dir that a server running as `owner` can reach and write.

    As root the servers drop to an unprivileged user, which must be able to walk
    the whole path: fall back to the world-traversable system temp dir when the
    configured one (TMPDIR) is private.
    """
    base = Path(tempfile.gettempdir())
    if owner is not None and not _world_traversable(base):
        base = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def chown_tree(path: Path, owner: str) -> None:
    entry = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _world_traversable(path: Path) -> bool:
    path = path.resolve()
    for part in [path, *path.parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def drop_privileges_prefix(user: str, group: str) -> list[str]:
    """The command prefix that runs a program as `user` when we are root."""
    if not running_as_root():
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is needed to run servers unprivileged as root")
    return [setpriv, f"--reuid={user}", f"--regid={group}", "--clear-groups"]
