"""Several console processes behind one address: the parent listens once and forks workers sharing the socket.

Why one inherited socket rather than SO_REUSEPORT: the address is bound once, so a busy port or a
bad host stops the command with one line before any worker starts; no other program of the same
user can join the port and take a share of the connections; the kernel keeps one queue of waiting
connections, so a worker that dies or is restarted drops none queued for it (with SO_REUSEPORT a
closing socket resets its queued connections); and it works the same on every Unix. Workers share
nothing else: sessions, login throttling and every figure they serve are in the database.

The parent only supervises: a worker that dies is replaced (a second later), SIGTERM or SIGINT stops
them all, each finishing its requests in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
import traceback

from flask import Flask, Response

from helpdesk.web.server import WebServer

log = logging.getLogger(__name__)

WORKER_HEADER = "X-Helpdesk-Worker"  # the pid of the process that answered: which worker, for operators
RESPAWN_DELAY = 1.0  # seconds before a dead worker is replaced: no fork loop if they die at once
STOP_TIMEOUT = 15.0  # seconds the workers get to finish their requests after SIGTERM


def _name_worker(response: Response) -> Response:
    response.headers[WORKER_HEADER] = str(os.getpid())
    return response


def _worker(app: Flask, sock: socket.socket) -> None:
    """The child: serve on the shared socket until SIGTERM; never return into the parent's code."""
    status = 0
    try:
        # The parent's handler came along with fork: until ours is set, SIGTERM simply ends this worker
        # (it must never signal the other workers as the parent's would).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us in order
        server = WebServer(app, sock=sock)
        signal.signal(signal.SIGTERM, lambda _signo, _frame: server.request_stop())
        server.serve_forever()
    except BaseException:  # noqa: BLE001 - whatever it was, the parent must see a dead worker, not a second parent
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


class Workers:
    def __init__(self, app: Flask, sock: socket.socket, count: int) -> None:
        self.app = app
        self.sock = sock
        self.count = count
        self.pids: set[int] = set()
        self.stopping = False

    def spawn(self) -> None:
        pid = os.fork()
        if pid == 0:
            _worker(self.app, self.sock)
        self.pids.add(pid)

    def stop(self, _signo: int = 0, _frame: object = None) -> None:
        self.stopping = True
        self._signal(signal.SIGTERM)

    def _signal(self, signo: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signo)

    def _reap(self) -> list[tuple[int, int]]:
        ended = []
        while self.pids:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            self.pids.discard(pid)
            ended.append((pid, status))
        return ended

    def supervise(self) -> None:
        deadline: float | None = None
        while self.pids or not self.stopping:
            for pid, status in self._reap():
                if not self.stopping:
                    log.warning("console worker %d ended (%s); starting another", pid, _how(status))
                    time.sleep(RESPAWN_DELAY)
                    if not self.stopping:
                        self.spawn()
            if self.stopping and deadline is None:
                deadline = time.monotonic() + STOP_TIMEOUT
            if deadline is not None and time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
            time.sleep(0.1)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def serve_workers(app: Flask, sock: socket.socket, count: int) -> None:
    """Serve ``app`` from ``count`` forked processes on the listening ``sock`` until SIGTERM or SIGINT.

    Call with no threads running and no database connections open (the children inherit both).
    """
    app.after_request(_name_worker)
    workers = Workers(app, sock, count)
    previous = {signo: signal.signal(signo, workers.stop) for signo in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(count):
            workers.spawn()
        workers.supervise()
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)
        sock.close()
