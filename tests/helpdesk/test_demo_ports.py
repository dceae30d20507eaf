"""The demo's servers: a server that dies at start-up is noticed at once, not waited on."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from helpdesk import demo


def test_waiting_for_a_port_stops_when_the_server_exits() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    with pytest.raises(OSError, match="exited \\(code 3\\)"):
        demo._wait_port(port, timeout=30, proc=proc)
    assert time.monotonic() - started < 10  # not the whole timeout


def test_demo_imap_server_moves_to_another_port_when_1143_is_taken() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 1143))
        except OSError:
            pass  # already in use by something else: just as good for this test
        else:
            taken.listen()
        port, proc = demo._start_pymap()
        try:
            assert port != 1143
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                assert conn.recv(100).startswith(b"* OK")
        finally:
            proc.kill()
            proc.wait()
