"""A webhook receiver on loopback: the standard library's HTTP server in a thread, keeping every POST.

``answers`` scripts the status of the next requests (then 200); ``hold`` keeps a request waiting
(the sender stays mid-delivery) until it is cleared.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["X-Helpdesk-Delivery"]


@dataclass
class WebhookReceiver:
    answers: deque[int | tuple[int, dict[str, str]]] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)  # set: requests wait until cleared
    arrived: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{HOST}:{self.server.server_address[1]}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                    receiver.arrived.notify_all()
                    answer = receiver.answers.popleft() if receiver.answers else 200
                while receiver.hold.is_set():  # the sender waits mid-delivery (and may be killed meanwhile)
                    threading.Event().wait(0.05)
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                text = b"ok" if status < 300 else b"nope: " + b"x" * 1000
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook-receiver").start()
        return self

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} webhook requests arrived, wanted {count}")
            return list(self.received)

    @classmethod
    def running(cls) -> Iterator[WebhookReceiver]:
        """For a fixture: started, and stopped after the test."""
        receiver = cls().start()
        try:
            yield receiver
        finally:
            receiver.stop()

    def stop(self) -> None:
        self.hold.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
