"""Serving the console with waitress: blocking, or in a thread with a clean stop."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading

from flask import Flask
from waitress import create_server
from waitress.server import BaseWSGIServer
from waitress.wasyncore import close_all

THREADS = 8
BACKLOG = 1024  # waitress's default


def serve(app: Flask, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C) or terminated (SIGTERM), finishing requests in flight."""
    server = WebServer(app, host, port)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signo, _frame: server.request_stop())
    print(f"web console on {server.url}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the stop asked for
        server.serve_forever()


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (a name is resolved; port 0 picks a free one).

    A host that does not resolve is a ValueError, as waitress makes it when it binds itself.
    """
    try:
        family, _kind, _proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ValueError(f"{host!r}: {exc.strerror}") from None
    return socket.create_server(address, family=family, backlog=BACKLOG, dualstack_ipv6=False)


class WebServer:
    """A waitress server bound at construction (port 0 picks a free port), or on a socket already listening."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        where = {"sockets": [sock]} if sock is not None else {"host": host, "port": port}
        server = create_server(app, threads=THREADS, ident="helpdesk", backlog=BACKLOG, **where)
        assert isinstance(server, BaseWSGIServer)  # one address: never a MultiSocketServer
        self._server = server
        self._thread: threading.Thread | None = None
        self._stop_requested = False

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        try:
            self._server.run()
        finally:
            self._server.task_dispatcher.shutdown()

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self.serve_forever, name="web", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Close the listener and every connection from inside the loop (safe from a signal handler).

        Only once: a second SIGTERM (a supervisor signalling the whole process group, then the parent
        passing it on) would find the loop's trigger already closed.
        """
        if self._stop_requested:
            return
        self._stop_requested = True
        server_map = self._server._map
        self._server.trigger.pull_trigger(lambda: close_all(server_map))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the loop to end."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
