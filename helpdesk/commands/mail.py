"""Commands that move mail: init, run, poll, send, ingest, parse, web, demo-mail."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.commands.common import CONFIG_ERRORS, EX_NOINPUT, EX_TEMPFAIL, build_app, print_json, safe_url, say
from helpdesk.config import ConfigError, ensure_data_dir, ensure_secret, load
from helpdesk.core.settings import SmtpSettings, TlsMode


def cmd_init(args: argparse.Namespace) -> int:
    from helpdesk.core import db

    settings = load(config_file=args.config)
    ensure_data_dir(settings.data_dir)
    ensure_secret(settings)  # made here, so that the first start of anything else finds it
    engine = db.make_engine(settings.database_url)
    before = db.current_revision(engine)
    db.upgrade(engine)
    after = db.current_revision(engine)
    print(f"database {safe_url(settings.database_url)}: " + (f"created at {after}" if before is None else f"{before} -> {after}"))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Raw messages from files (or one from stdin), as an MTA pipe delivers them.

    Exit 75 tells the MTA to keep the mail and try again: only before the mail is stored. Once
    stored it is ours; if processing then hits a hiccup, `poll`/`run` finish it later.
    """
    from helpdesk.core.db import transaction
    from helpdesk.core.intake import process_pending

    try:
        sources = [
            (name, sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()) for name in args.files or ["-"]
        ]
    except OSError as exc:
        print(f"helpdesk ingest: cannot read {exc.filename or 'stdin'}: {exc.strerror or exc}", file=sys.stderr)
        return EX_NOINPUT if exc.filename else EX_TEMPFAIL  # the MTA's pipe broke: it still has the mail
    try:
        app = build_app(args)
        with transaction(app.factory) as session:
            stored = [(name, app.intake.store(session, raw, source="ingest")) for name, raw in sources]
    except CONFIG_ERRORS:
        raise  # main() names the setting and exits EX_TEMPFAIL
    except Exception as exc:  # noqa: BLE001 - whatever it is, the mail is not ours yet: the MTA must keep it
        cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        print(f"helpdesk ingest: cannot store the mail now, try again later: {text}", file=sys.stderr)
        return EX_TEMPFAIL
    try:
        results = {r.inbound_id: r for r in process_pending(app.factory, app.intake)}
    except DBAPIError as exc:
        print(f"helpdesk ingest: stored; `helpdesk process`, `poll` or `run` will process it: {exc.orig}", file=sys.stderr)
        results = {}
    for name, inbound in stored:
        r = results.get(inbound.id) if inbound is not None else None
        status = r.status.value if r else "stored"
        ticket = f" ticket #{r.ticket_id}" if r and r.ticket_id else ""
        reason = f" ({r.reason})" if r and r.reason else ""
        say(f"{name}: {status}{ticket}{reason}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from helpdesk.core import conversation, events, loopguard
    from helpdesk.mailgateway.parse import UnreadableMail, parse_message, parsed_to_json

    settings = None
    with contextlib.suppress(ConfigError):  # parsing needs no configuration; a broken one only loses the extras
        settings = load(config_file=args.config)
    own = {settings.address} if settings else set()

    def ours(message_id: str) -> bool:
        # Without a secret key yet (load() makes none), no Message-ID can be one this desk signed.
        return settings is not None and bool(settings.secret_key) and conversation.is_our_message_id(settings, message_id)
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
            parsed = parse_message(raw)
            verdicts = loopguard.judge(parsed, own_addresses=own, is_own_message_id=ours)
            data = parsed_to_json(parsed, verdicts.as_json())
            data["file"] = name
            # Which loop rules fired, and which alert an alert parser read (and how: its "via").
            data["loop_reasons"] = list(verdicts.reasons)
            alert = events.parse_alert(parsed, settings.events if settings else None)
            data["alert"] = alert.as_json() if alert else None
        except (OSError, UnreadableMail) as exc:
            data = {"file": name, "error": str(exc) or type(exc).__name__}
        print_json(data)
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from helpdesk.mailgateway.watcher import poll_once
    from helpdesk.runner import watch_forever
    from helpdesk.wiring import build

    settings = ensure_secret(load(config_file=args.config))
    if not settings.mailboxes:
        raise ConfigError("HELPDESK_IMAP_HOST: no mailbox configured to poll")
    if not args.once:
        watch_forever(settings)  # waits for the database when it is down
        return 0
    from helpdesk.mailgateway.watcher import LeaseLost

    app = build(settings)  # a database that is down: main() exits EX_TEMPFAIL
    for mailbox in app.settings.mailboxes:
        try:
            result = poll_once(app.factory, app.intake, mailbox, lease_seconds=app.settings.lease_seconds)
        except LeaseLost as exc:
            print(f"helpdesk poll: {exc}", file=sys.stderr)
            return 1
        print(f"{mailbox.name}: fetched {result.fetched}, stored {result.stored}")
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """Process stored mail (piped in by `ingest`, fetched by `poll`, requeued) without reading a mailbox.

    On PostgreSQL any number of these share the stored mail: each mail is claimed by one of them.
    """
    import time
    from collections import Counter

    from helpdesk.core.intake import process_pending
    from helpdesk.runner import process_forever
    from helpdesk.wiring import build

    settings = ensure_secret(load(config_file=args.config))
    if not args.once:
        process_forever(settings)  # waits for the database when it is down
        return 0
    app = build(settings)  # a database that is down: main() exits EX_TEMPFAIL
    started = time.perf_counter()
    results = process_pending(app.factory, app.intake)
    took = time.perf_counter() - started
    counts = Counter(r.status.value for r in results)
    detail = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    print(f"processed {len(results)} stored mails in {took:.2f} s" + (f" ({detail})" if detail else ""))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from helpdesk.mailgateway import graphsend
    from helpdesk.mailgateway.smtp import send_once
    from helpdesk.mailgateway.webhook import deliver_once
    from helpdesk.runner import send_forever, send_policy
    from helpdesk.wiring import build

    settings = ensure_secret(load(config_file=args.config))  # webhook secrets are sealed with it
    graph = graphsend.sends_through_graph(settings)
    if settings.smtp is None and not graph:
        raise ConfigError("HELPDESK_SMTP_HOST: no SMTP server (nor a mailbox with transport = graph) configured to send through")
    if not args.once:
        send_forever(settings)  # waits for the database when it is down
        return 0
    app = build(settings)  # a database that is down: main() exits EX_TEMPFAIL
    before = _unsent_attempts(app.factory)
    if graph:
        sent, failed = graphsend.send_once(app.factory, settings, policy=send_policy(settings))
    else:
        assert settings.smtp is not None
        sent, failed = send_once(app.factory, settings.smtp, policy=send_policy(settings))
    print(f"sent {sent}, failed {failed}")
    if failed and not sent and settings.smtp is not None:
        problem = _smtp_problem(settings.smtp, _errors_since(app.factory, before))
        if problem:
            print(f"helpdesk send: {problem}", file=sys.stderr)
    delivered, undelivered = deliver_once(app.factory, settings, policy=send_policy(settings))
    if delivered or undelivered:
        print(f"webhooks: delivered {delivered}, failed {undelivered}")
    return 0 if not (failed or undelivered) else 1


def _unsent_attempts(factory: sessionmaker[Session]) -> dict[int, tuple[int, str | None]]:
    """Unsent mail: id -> (attempts, last error)."""
    from helpdesk.core.models import Outbox, OutboxStatus

    with factory() as session:
        rows = session.execute(
            select(Outbox.id, Outbox.attempts, Outbox.last_error)
            .where(Outbox.status != OutboxStatus.SENT)
            .order_by(Outbox.id)
        )
        return {row.id: (row.attempts, row.last_error) for row in rows}


def _errors_since(factory: sessionmaker[Session], before: dict[int, tuple[int, str | None]]) -> list[str]:
    """The errors of the mails attempted since ``before`` (send_once only counts them)."""
    return [
        error
        for outbox_id, (attempts, error) in _unsent_attempts(factory).items()
        if error and attempts > before.get(outbox_id, (0, None))[0]
    ]


def _smtp_problem(smtp: SmtpSettings, errors: list[str]) -> str | None:
    """Every attempt of a run failed: the settings to look at, if the errors point at them."""
    if not errors or all(e.startswith("recipients refused") for e in errors):
        return None  # the addresses' fault, not the server settings' (see `helpdesk outbox list`)
    where = f"{smtp.host}:{smtp.port}"
    last = errors[-1].removeprefix(f"SMTP {where}: ").replace("\n", " ")
    if any("SMTPAuthenticationError" in e or "(530," in e for e in errors):  # refused, or needed and not given
        return f"HELPDESK_SMTP_USER/HELPDESK_SMTP_PASSWORD: login to {where} failed: {last}"
    tls = "/HELPDESK_SMTP_TLS" if smtp.tls is not TlsMode.NONE else ""
    if all(e.startswith((f"SMTP {where}:", "reconnecting:")) for e in errors):  # no connection at all
        return f"HELPDESK_SMTP_HOST/HELPDESK_SMTP_PORT{tls}: cannot connect to {where}: {last}"
    return f"HELPDESK_SMTP_HOST/HELPDESK_SMTP_PORT{tls}: could not deliver: {last}"


def cmd_run(args: argparse.Namespace) -> int:
    from helpdesk.runner import run

    return run(ensure_secret(load(config_file=args.config)))


def cmd_web(args: argparse.Namespace) -> int:
    from helpdesk.runner import serve_web

    app = build_app(args)
    host, port = args.host or app.settings.web_host, args.port if args.port is not None else app.settings.web_port
    serve_web(app, host, port, host_setting="--host" if args.host else "HELPDESK_WEB_HOST",
              port_setting="--port" if args.port is not None else "HELPDESK_WEB_PORT", workers=args.workers)
    return 0


def cmd_demo_mail(args: argparse.Namespace) -> int:
    from helpdesk.demo import send_demo_mail

    settings = load(config_file=args.config)
    try:
        message_id = send_demo_mail(settings, sender=args.sender, subject=args.subject, body=args.body)
    except OSError as exc:
        print(f"helpdesk demo-mail: {exc}", file=sys.stderr)
        return 1
    print(f"sent <{message_id}> from {args.sender} to {settings.address}")
    return 0
