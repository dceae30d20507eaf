"""Long-running loops: the watcher, the sender, the web console, and ``helpdesk run`` tying them together."""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from helpdesk.config import ConfigError
from helpdesk.core.db import UNAVAILABLE, unavailable_reason
from helpdesk.core.outbox import RetryPolicy
from helpdesk.core.settings import MailboxSettings, Settings
from helpdesk.mailgateway.watcher import Backoff
from helpdesk.wiring import App, build

log = logging.getLogger("helpdesk.run")

# A database that is down is waited for, not given up on: a supervisor need not restart us.
DATABASE_BACKOFF = (1.0, 60.0)  # seconds: the first wait, doubling up to the last
DATABASE = "HELPDESK_DATABASE_URL: database"  # how log lines name it: after its setting, never its URL


def database_backoff() -> Backoff:
    return Backoff(*DATABASE_BACKOFF)


def wait_for_database(exc: BaseException, backoff: Backoff, stop: threading.Event, what: str = "") -> None:
    """One line for this attempt (the setting and the driver's reason, no password), then the next backoff."""
    delay = backoff.next()
    log.warning("%s%s unavailable: %s; retrying in %.0f s", what, DATABASE, unavailable_reason(exc), delay)
    stop.wait(delay)


def build_when_ready(settings: Settings, stop: threading.Event) -> App | None:
    """The services, once the database answers; None if stopped while waiting for it."""
    backoff = database_backoff()
    while not stop.is_set():
        try:
            return build(settings)
        except UNAVAILABLE as exc:
            wait_for_database(exc, backoff, stop)
    return None


def watch_mailbox(app: App, mailbox: MailboxSettings, stop: threading.Event) -> None:
    """Keep one mailbox drained (see mailgateway.watcher.watch_mailbox)."""
    from helpdesk.mailgateway.watcher import WatchOptions
    from helpdesk.mailgateway.watcher import watch_mailbox as watch

    options = WatchOptions(
        lease_seconds=app.settings.lease_seconds, poll_interval=app.settings.poll_interval,
        max_database_backoff=DATABASE_BACKOFF[1], database_label=DATABASE,
    )
    watch(app.factory, app.intake, mailbox, stop, options)


# Stored mails per round of the processing worker, between looks at `stop`.
PROCESS_CHUNK = 200


def process_loop(app: App, stop: threading.Event, interval: float = 2.0) -> None:
    """Process stored mail (every mailbox's, every source's) until stopped, in a thread of its own.

    Woken by a commit that stored mail (``Intake.arrived``); otherwise it looks every ``interval``
    seconds, for mail another process stored (PostgreSQL) and for retries that fell due.
    """
    from helpdesk.core.intake import process_pending

    backoff = database_backoff()
    while not stop.is_set():
        app.intake.arrived.clear()
        try:
            done = process_pending(app.factory, app.intake, PROCESS_CHUNK)
            backoff.reset()
        except UNAVAILABLE as exc:
            wait_for_database(exc, backoff, stop, "processing: ")
            continue
        except Exception:  # a bug: logged, and the worker lives on
            log.exception("processing failed; trying again in %.0f s", interval)
            stop.wait(interval)
            continue
        if not done:
            app.intake.arrived.wait(interval)


def mail_threads(app: App, stop: threading.Event) -> list[threading.Thread]:
    """One watcher per mailbox (fetch and store) and one processing worker, as `poll` and `run` start them."""
    threads = [_start(watch_mailbox, app, m, stop) for m in app.settings.mailboxes]
    return [*threads, _start(process_loop, app, stop)]


def send_policy(settings: Settings) -> RetryPolicy:
    """A killed sender's mail is taken over after the lease time, as a dead poller's mailbox is."""
    return RetryPolicy(claim_for=timedelta(seconds=settings.lease_seconds))


def send_loop(app: App, stop: threading.Event, interval: float = 2.0) -> None:
    """The outbox over SMTP (when a server is configured) or Microsoft Graph, and webhook deliveries over HTTP."""
    from helpdesk.mailgateway import graphsend
    from helpdesk.mailgateway.smtp import send_once
    from helpdesk.mailgateway.webhook import deliver_once

    backoff = database_backoff()
    while not stop.is_set():
        try:
            sent = failed = 0
            if app.settings.smtp is not None:
                sent, failed = send_once(app.factory, app.settings.smtp, policy=send_policy(app.settings), stop=stop)
            elif graphsend.sends_through_graph(app.settings):
                sent, failed = graphsend.send_once(app.factory, app.settings, policy=send_policy(app.settings), stop=stop)
            if sent or failed:
                log.info("outbox: sent %d, failed %d", sent, failed)
            sent, failed = deliver_once(app.factory, app.settings, policy=send_policy(app.settings), stop=stop)
            backoff.reset()
            if sent or failed:
                log.info("webhooks: delivered %d, failed %d", sent, failed)
        except UNAVAILABLE as exc:
            wait_for_database(exc, backoff, stop, "sender: ")
            continue
        except Exception:
            log.exception("sender failed; trying again")
        stop.wait(interval)


def sla_loop(app: App, stop: threading.Event, interval: float = 60.0) -> None:
    """The scheduled SLA check of `helpdesk run` (the same as `helpdesk sla --check`), with grant expiry and
    retention (as `helpdesk retention --apply`, when HELPDESK_RETENTION_DAYS is set)."""
    from helpdesk.core import access, privacy, sla
    from helpdesk.core.db import transaction
    from helpdesk.core.models import utcnow

    while not stop.wait(interval):
        try:
            with transaction(app.factory) as session:
                findings = sla.check(session, app.settings, utcnow())
                grants = access.warn_expiring(session, app.settings, utcnow())
            for f in findings:
                log.info("SLA: ticket #%s %s %s", f.ticket_id, f.metric.value, f.level.value)
            if grants.warned or grants.expired:
                log.info("access grants: %d expiring soon, %d expired", len(grants.warned), len(grants.expired))
            if app.settings.retention_days:  # its own transaction: a failure here keeps the SLA marks
                with transaction(app.factory) as session:
                    kept = privacy.apply_retention(session, app.settings, utcnow())
                if kept.anonymised or kept.deleted:
                    log.info("retention: %d ticket(s) anonymised, %d deleted", len(kept.anonymised), len(kept.deleted))
        except UNAVAILABLE as exc:  # the next check comes in a minute anyway: one line, no traceback
            log.warning("SLA check: %s unavailable: %s; trying again in %.0f s", DATABASE, unavailable_reason(exc), interval)
        except Exception:
            log.exception("SLA check failed; trying again in %.0f s", interval)


def _stop_on_signal(stop: threading.Event) -> None:
    def handler(signum, frame):  # type: ignore[no-untyped-def]
        log.info("stopping (signal %s)", signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _until_signal(stop: threading.Event) -> None:
    _stop_on_signal(stop)
    while not stop.is_set():
        stop.wait(0.5)


def _start(target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=target, args=args, daemon=True, name=target.__name__)
    thread.start()
    return thread


def watch_forever(settings: Settings) -> None:
    stop = threading.Event()
    _stop_on_signal(stop)  # also while waiting for the database
    app = build_when_ready(settings, stop)
    if app is None:
        return
    threads = mail_threads(app, stop)
    _until_signal(stop)
    for t in threads:
        t.join(timeout=10)


def process_forever(settings: Settings) -> None:
    """The processing worker alone, until a signal: stored mail of every source, no mailbox read."""
    _loop_forever(settings, process_loop)


def send_forever(settings: Settings) -> None:
    _loop_forever(settings, send_loop)


def _loop_forever(settings: Settings, loop) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()
    _stop_on_signal(stop)
    app = build_when_ready(settings, stop)
    if app is None:
        return
    thread = _start(loop, app, stop)
    _until_signal(stop)
    thread.join(timeout=10)


@contextmanager
def _listening(host: str, port: int, host_setting: str, port_setting: str) -> Iterator[None]:
    """Binding the console's address fails because of a setting: say which, in one line."""
    try:
        yield
    except ValueError:  # waitress: a host that neither parses nor resolves
        raise ConfigError(f"{host_setting}: {host!r} is no address or host name to listen on") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{port_setting}: {host}:{port} is already in use") from None
        raise ConfigError(f"{host_setting}/{port_setting}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_web(app: App, host: str, port: int, *, host_setting: str = "HELPDESK_WEB_HOST",
              port_setting: str = "HELPDESK_WEB_PORT", workers: int = 1) -> None:
    from helpdesk.web import create_app, serve

    flask_app = create_app(app.settings, app.factory)
    if workers == 1:
        with _listening(host, port, host_setting, port_setting):
            serve(flask_app, host, port)
        return
    from helpdesk.web.server import listen_socket
    from helpdesk.web.workers import serve_workers

    with _listening(host, port, host_setting, port_setting):
        sock = listen_socket(host, port)
    app.engine.dispose()  # the workers open their own connections: none may be shared across fork
    name, bound = sock.getsockname()[:2]
    print(f"web console on http://{f'[{name}]' if ':' in name else name}:{bound}/ ({workers} workers)", flush=True)
    serve_workers(flask_app, sock, workers)


def run(settings: Settings) -> int:
    """Everything in one process. Without a configured mail server, a local demo one is started."""
    from helpdesk import demo

    demo_servers = demo.start(settings) if not settings.mailboxes else None
    if demo_servers is not None:
        settings = demo_servers.settings
    stop = threading.Event()
    threads: list[threading.Thread] = []
    web_server = None
    app = None
    try:
        _stop_on_signal(stop)  # also while waiting for the database
        app = build_when_ready(settings, stop)
        if app is None:
            return 0
        from helpdesk.web import WebServer, create_app

        # Bound before anything else starts, so that a busy port stops `run` with one line, not amid their logs.
        with _listening(settings.web_host, settings.web_port, "HELPDESK_WEB_HOST", "HELPDESK_WEB_PORT"):
            web_server = WebServer(create_app(settings, app.factory), settings.web_host, settings.web_port)
        threads = mail_threads(app, stop)
        threads.append(_start(send_loop, app, stop))  # mail (when SMTP is set) and webhooks
        threads.append(_start(sla_loop, app, stop))
        web_server.start()
        url = web_server.url + "/"
        print(f"\nHelpdesk is running.\n  console:      {url}\n  help address: {settings.address}", flush=True)
        if demo_servers is not None:
            print(demo_servers.instructions(), flush=True)
            print(demo.ensure_demo_login(app.factory, settings), flush=True)
        print("Press Ctrl-C to stop.\n", flush=True)
        _until_signal(stop)
    finally:
        stop.set()
        if web_server is not None:
            web_server.stop()
        for t in threads:
            t.join(timeout=10)
        if demo_servers is not None:
            demo_servers.stop()
        if app is not None:
            app.engine.dispose()
    print("Helpdesk stopped.", flush=True)
    return 0
