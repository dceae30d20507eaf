"""``helpdesk``: the command line. Every command is a thin call into core or the mail gateway."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from helpdesk.commands.checks import cmd_check_config
from helpdesk.commands.common import CONFIG_ERRORS, EX_TEMPFAIL, EX_USAGE
from helpdesk.commands.data import cmd_backup, cmd_erase, cmd_export, cmd_restore, cmd_retention
from helpdesk.commands.desk import cmd_outbox, cmd_quarantine, cmd_ticket, cmd_tickets, cmd_user_add, cmd_user_token
from helpdesk.commands.itil import cmd_audit, cmd_events, cmd_report, cmd_sla
from helpdesk.commands.logins import cmd_mailboxes
from helpdesk.commands.mail import (
    cmd_demo_mail,
    cmd_ingest,
    cmd_init,
    cmd_parse,
    cmd_poll,
    cmd_process,
    cmd_run,
    cmd_send,
    cmd_web,
)
from helpdesk.config import VARIABLES
from helpdesk.core.db import UNAVAILABLE, unavailable_reason
from helpdesk.core.models import MAX_ID

log = logging.getLogger("helpdesk")


def _whole_number(low: int, high: int, note: str = "") -> Callable[[str], int]:
    """An argparse type for a whole number in [low, high], so that the database or the socket never sees more."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}{note}, not {number}")
        return number

    return parse


PORT = _whole_number(0, 65535, " (0: any free port)")
ROW_ID = _whole_number(1, MAX_ID)


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {k:<32} {v}" for k, v in VARIABLES.items())
    parser = argparse.ArgumentParser(
        prog="helpdesk",
        description="Email-driven IT service desk (ITIL Service Operation).",
        epilog=f"configuration (environment variables):\n{env_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="TOML settings file (also HELPDESK_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help.replace("%%", "%"))
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create the database or migrate it to the newest schema")
    add("check-config", cmd_check_config,
        "read and check the settings, rules, catalogue and priority matrix as a start would; writes nothing")
    add("run", cmd_run, "run everything: poller, sender, SLA checks and web console (a demo mail server if none is configured)")
    p = add("poll", cmd_poll, "fetch new mail from IMAP and process it")
    p.add_argument("--once", action="store_true", help="poll once and exit")
    p = add("process", cmd_process,
            "process stored mail (piped in, fetched, requeued) without reading a mailbox; on PostgreSQL any number share it")
    p.add_argument("--once", action="store_true", help="process what is stored and due, then exit")
    p = add("send", cmd_send, "deliver the outbox over SMTP, and webhook deliveries")
    p.add_argument("--once", action="store_true", help="send what is due and exit")
    p = add("ingest", cmd_ingest, "take raw messages from files or stdin (exit 75 on a temporary failure)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p = add("parse", cmd_parse, "print what the helpdesk reads out of messages, one JSON object per file")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="JSON Lines output (the only format)")
    p = add("mailboxes", cmd_mailboxes,
            "each mailbox's login: auth kind, last success, last error, token expiry (exit 1 if one fails)")
    p.add_argument("--json", action="store_true")
    p = add("tickets", cmd_tickets, "list tickets")
    p.add_argument("--json", action="store_true")
    p = add("ticket", cmd_ticket, "show one ticket with its messages")
    p.add_argument("number", type=ROW_ID, metavar="N")
    p.add_argument("--json", action="store_true")
    user = sub.add_parser("user", help="manage console users").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("add", help="add a user (asks for the password)")
    p.set_defaults(func=cmd_user_add)
    p.add_argument("email")
    p.add_argument("--role", required=True, help="admin | agent | approver | user")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = user.add_parser("token", help="issue or rotate a user's API token (printed once); the old one stops working")
    p.set_defaults(func=cmd_user_token)
    p.add_argument("email")
    p.add_argument("--scope", choices=["all", "events"],
                   help="events: the token may only post monitoring alerts (default: as the token it replaces, else all)")
    p.add_argument("--revoke", action="store_true", help="revoke the token instead")
    p = add("web", cmd_web, "serve the web console")
    p.add_argument("--host")
    p.add_argument("--port", type=PORT)
    p.add_argument("--workers", type=_whole_number(1, 64), default=1,
                   help="console processes sharing the address (default 1); they share state through the database")
    p = add("demo-mail", cmd_demo_mail, "send a test mail to the help address through the configured or demo SMTP server")
    p.add_argument("--from", dest="sender", default="alice@example.com")
    p.add_argument("--subject", default="VPN is down, cannot work")
    p.add_argument("--body", default="Hello,\n\nthe VPN does not connect since this morning.\n\nAlice\n")
    p = add("quarantine", cmd_quarantine,
            "mail that could not be processed: list, show ID, requeue ID, discard ID --reason TEXT")
    p.add_argument("action", choices=["list", "show", "requeue", "discard"])
    p.add_argument("id", type=ROW_ID, nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--reason", help="why the mail is discarded (audited); needed by discard")
    p = add("outbox", cmd_outbox, "outgoing mail: list (unsent), retry ID")
    p.add_argument("action", choices=["list", "retry"])
    p.add_argument("id", type=ROW_ID, nargs="?")
    p.add_argument("--all", action="store_true", help="list sent mail too")
    p.add_argument("--json", action="store_true")
    p = add("sla", cmd_sla, "check SLA clocks: warn at 80%%, mark breaches, escalate by email")
    p.add_argument("--check", action="store_true", help="run the check once (the only mode; `run` checks every minute)")
    p.add_argument("--json", action="store_true")
    p = add("events", cmd_events, "monitoring events, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    audit_p = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(dest="audit_command", required=True)
    p = audit_p.add_parser("verify", help="check the hash chain of every audit entry")
    p.set_defaults(func=cmd_audit)
    p = add("report", cmd_report, "figures: volumes, SLA compliance, response and resolution times, backlog")
    p.add_argument("--json", action="store_true")
    p = add("backup", cmd_backup,
            "write database rows, attachments and the local secret key to one zip (portable across databases)")
    p.add_argument("file", metavar="FILE")
    p = add("restore", cmd_restore, "load a backup into an empty database (and the data dir)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace the contents of a database that is not empty")
    p = add("export", cmd_export, "a person's data for a data-access request: one zip with person.json, attachments, their mails")
    p.add_argument("--requester", required=True, metavar="EMAIL")
    p.add_argument("--output", metavar="FILE", help="the zip to write (default EMAIL.zip)")
    p.add_argument("--internal-notes", action="store_true", help="include internal notes on their tickets (read them first)")
    p = add("erase", cmd_erase, "anonymise a person: contact, their messages and mail; ticket figures stay (audited)")
    p.add_argument("--requester", required=True, metavar="EMAIL")
    p = add("retention", cmd_retention,
            "anonymise or delete closed tickets past HELPDESK_RETENTION_DAYS (a dry run without --apply)")
    p.add_argument("--apply", action="store_true", help="do it (`run` does it every minute with the SLA check)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for chatty in ("alembic", "imapclient"):  # they log routine steps at INFO
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # imaplib's trace logs every protocol line, fetched mails included: logs never carry mail content.
    logging.getLogger("imapclient.imaplib").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except CONFIG_ERRORS as exc:
        problem = str(exc).replace("\n", " ")  # the rules, catalogue and priority errors name their file
        if args.command == "ingest":
            # Any other exit status makes the MTA bounce the mail: keep it queued until this is fixed.
            print(f"helpdesk ingest: configuration error, mail not taken (retry later): {problem}", file=sys.stderr)
            return EX_TEMPFAIL
        print(f"helpdesk: configuration error: {problem}", file=sys.stderr)
        return EX_USAGE
    except KeyboardInterrupt:
        return 130
    except UNAVAILABLE as exc:
        # Down or restarting: a temporary failure (sysexits), so a scheduler or MTA tries again later.
        print(f"helpdesk: HELPDESK_DATABASE_URL: database unavailable: {unavailable_reason(exc)}", file=sys.stderr)
        return EX_TEMPFAIL
    except _imap_errors() as exc:
        from helpdesk.mailgateway.imap import FolderMissing, LoginFailed, ServerUnreachable, TlsFailed

        setting = (
            "HELPDESK_IMAP_USER/HELPDESK_IMAP_PASSWORD" if isinstance(exc, LoginFailed)
            else "HELPDESK_IMAP_HOST/HELPDESK_IMAP_PORT/HELPDESK_IMAP_TLS" if isinstance(exc, ServerUnreachable)
            else "HELPDESK_IMAP_FOLDER" if isinstance(exc, FolderMissing)
            else "HELPDESK_IMAP_TLS" if isinstance(exc, TlsFailed)
            else "HELPDESK_IMAP_*"
        )
        print(f"helpdesk: {setting}: {exc}", file=sys.stderr)
        return 1


def _imap_errors() -> tuple[type[BaseException], ...]:
    from helpdesk.mailgateway.imap import ImapError

    return (ImapError,)


if __name__ == "__main__":
    sys.exit(main())
