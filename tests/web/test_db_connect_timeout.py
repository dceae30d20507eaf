"""A PostgreSQL host that accepts connections and never answers: the engine gives up within its connect
timeout with a one-line reason, instead of hanging until TCP does (minutes)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from flask import Flask

from helpdesk.core import db
from helpdesk.core.settings import Settings
from helpdesk import runner
from helpdesk.web import create_app


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts every connection and never sends a byte; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def attempt_to_connect(url: str, limit: float) -> tuple[float, BaseException | None]:
    """Seconds until the engine gave up (or `limit`, if it still waits then) and what it raised."""
    engine = db.make_engine(url)
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            with engine.connect():
                pass
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(limit)
    took = time.monotonic() - started
    engine.dispose()
    return took, outcome[0] if outcome else None


def test_a_postgresql_host_that_never_answers_is_given_up_on_after_the_default_timeout() -> None:
    with silent_server() as port:
        took, exc = attempt_to_connect(f"postgresql+psycopg://helpdesk@127.0.0.1:{port}/helpdesk", limit=20)
    assert exc is not None, f"still waiting after {took:.1f} s"
    assert db.CONNECT_TIMEOUT - 1 <= took <= db.CONNECT_TIMEOUT + 3
    assert isinstance(exc, db.UNAVAILABLE)  # so the runner waits for the database rather than dying
    reason = db.unavailable_reason(exc)
    assert "timeout" in reason and "\n" not in reason


def test_the_urls_own_connect_timeout_wins() -> None:
    with silent_server() as port:
        took, exc = attempt_to_connect(
            f"postgresql+psycopg://helpdesk@127.0.0.1:{port}/helpdesk?connect_timeout=2", limit=20)
    assert exc is not None and isinstance(exc, db.UNAVAILABLE)
    assert 1.5 <= took <= 4


def test_readyz_answers_503_within_the_timeout_for_a_silent_database(settings: Settings) -> None:
    with silent_server() as port:
        engine = db.make_engine(f"postgresql+psycopg://helpdesk@127.0.0.1:{port}/helpdesk?connect_timeout=2")
        try:
            app: Flask = create_app(settings, db.make_sessionmaker(engine), testing=True)
            answer: list[tuple[int, object]] = []

            def ask() -> None:
                response = app.test_client().get("/readyz")
                answer.append((response.status_code, response.get_json()["checks"]))

            thread = threading.Thread(target=ask, daemon=True)
            thread.start()
            thread.join(15)
        finally:
            engine.dispose()
    assert answer == [(503, {"database": "unreachable", "mailboxes": "unknown"})]


def test_the_runner_waits_for_a_silent_database_with_one_line_per_attempt(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    with silent_server() as port:
        silent = replace(settings, database_url=f"postgresql+psycopg://helpdesk@127.0.0.1:{port}/helpdesk?connect_timeout=2")
        threading.Timer(2.5, stop.set).start()  # during the first backoff wait
        with caplog.at_level(logging.WARNING, logger="helpdesk.run"):
            started = time.monotonic()
            assert runner.build_when_ready(silent, stop) is None
            took = time.monotonic() - started
    assert took < 5  # the backoff wait ends with the stop, not after a TCP timeout
    [line] = [r.getMessage() for r in caplog.records]
    assert "unavailable: connection timeout expired; retrying in 1 s" in line and "\n" not in line
