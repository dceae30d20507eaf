"""Agents working from their inbox: commands at the top of a reply, notes, and who may use them.

An agent answers a notification; lines like ``#priority P2`` at the top of the reply act on the
ticket and never reach the user. Commands (and public replies) count only from an authenticated
mail: its reply token is valid for that agent and, for trusted domains, the receiving server's
``Authentication-Results`` says DKIM or SPF passed. Otherwise an internal note says why not.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.core import access, audit, conversation, fulfilment, groups, macros, merge, processes, tickets
from helpdesk.core import fields as custom_fields  # (``fields`` names a command's ticket changes here)
from helpdesk.core.approval import PolicyViolation
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import (
    AccessRequest,
    AccessStatus,
    Attachment,
    Contact,
    Direction,
    Message,
    Ticket,
    TicketKind,
    TicketStatus,
    utcnow,
)
from helpdesk.core.notify import OutboundAttachment, fit_attachments, load_attachments
from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.core.settings import Settings


class Verb(enum.Enum):
    NOTE = "note"
    RESOLVE = "resolve"
    CLOSE = "close"
    PRIORITY = "priority"
    ASSIGN = "assign"
    KIND = "kind"
    CATEGORY = "category"
    DONE = "done"  # ``#done 2``: step 2 of a service request's checklist
    FULFILLED = "fulfilled"  # the request is fulfilled (every step done); the user is told
    MERGE = "merge"  # ``#merge 12``: this ticket is a duplicate of #12 and goes into it
    MACRO = "macro"  # ``#macro NAME``: the canned reply NAME (and what it sets)
    SET = "set"  # ``#set KEY=VALUE``: a custom field (core.fields); ``#set KEY=`` clears it
    GROUP = "group"  # ``#group NAME``: the ticket goes to group NAME (``#group none``: to no group)
    APPROVE = "approve"  # an approver's decision: the approval policy, not the agent rules, applies
    REJECT = "reject"


APPROVAL_VERBS = (Verb.APPROVE, Verb.REJECT)
REASON_LIMIT = 500  # as in the console's decision form


@dataclass(frozen=True)
class Command:
    verb: Verb
    argument: str
    line: str


@dataclass(frozen=True)
class ApprovalCommand:
    approve: bool
    reason: str | None
    line: str
    reason_below: bool = False  # ``#reject`` alone: the reason is the first paragraph under the commands


@dataclass(frozen=True)
class AgentText:
    """A reply split into its command lines (one block at the top, any mix) and the text meant for people."""

    commands: list[Command]
    body: str
    note: bool  # ``#note``: the whole mail is internal

    @property
    def has_commands(self) -> bool:
        return bool(self.commands) or self.note

    @property
    def ticket_commands(self) -> list[Command]:
        """The commands for agents (everything but ``#approve``/``#reject``)."""
        return [c for c in self.commands if c.verb not in APPROVAL_VERBS]

    @property
    def approval(self) -> ApprovalCommand | None:
        """The first ``#approve``/``#reject`` of the block; a second decision in one mail is ignored."""
        for c in self.commands:
            if c.verb is Verb.REJECT and not c.argument:
                # The reason is for the requester: written on the line below #reject, it is still the reason.
                below = re.split(r"\n\s*\n", self.body, maxsplit=1)[0]
                reason = " ".join(below.split())[:REASON_LIMIT] or None
                return ApprovalCommand(False, reason, c.line, reason_below=reason is not None)
            if c.verb in APPROVAL_VERBS:
                return ApprovalCommand(c.verb is Verb.APPROVE, c.argument or None, c.line)
        return None


_COMMAND_LINE = re.compile(r"^\s*#(" + "|".join(v.value for v in Verb) + r")\b[ \t:]*(.*?)\s*$", re.IGNORECASE)


def split_commands(text: str) -> AgentText:
    """Command lines are read from the top of the text until the first line that is none."""
    lines = text.replace("\r\n", "\n").split("\n")
    commands: list[Command] = []
    note = False
    index = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        m = _COMMAND_LINE.match(line)
        if m is None:
            break
        verb, argument = Verb(m.group(1).lower()), m.group(2)
        if verb is Verb.NOTE:
            note = True
            if argument:  # "#note the disk was replaced": the rest of the line is text
                lines[index] = argument
                break
        else:
            commands.append(Command(verb, argument, line.strip()))
    else:
        index = len(lines)
    return AgentText(commands, "\n".join(lines[index:]).strip(), note)


# -- authentication -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Authentication:
    ok: bool
    reason: str


_COMMENT = re.compile(r"\([^()]*\)")


def _domain_of(value: str) -> str:
    return value.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")


def _aligned(domain: str, sender_domain: str) -> bool:
    return bool(domain) and (sender_domain == domain or sender_domain.endswith("." + domain))


def authentication_results_pass(settings: Settings, mail: ParsedMail) -> str | None:
    """Which check passed for the sender's domain ("dkim" or "spf"), per our receiving server."""
    headers = mail.headers.get("authentication-results", [])
    wanted = settings.conversation.authserv_id
    if wanted is None:
        headers = headers[:1]  # the topmost one is written by the server that received the mail
    sender_domain = _domain_of(mail.sender)
    for header in headers:
        serv_id, _, rest = _COMMENT.sub("", header).partition(";")
        if wanted is not None and serv_id.strip().lower().split()[:1] != [wanted.lower()]:
            continue
        for clause in rest.split(";"):
            words = clause.split()
            if not words or "=" not in words[0]:
                continue
            method, _, result = words[0].lower().partition("=")
            props = dict(w.lower().split("=", 1) for w in words[1:] if "=" in w)
            if result != "pass":
                continue
            if method == "dkim":
                signer = props.get("header.d") or _domain_of(props.get("header.i", ""))
                if not signer or _aligned(signer, sender_domain):
                    return "dkim"
            if method == "spf":
                envelope = props.get("smtp.mailfrom", "")
                if not envelope or _aligned(_domain_of(envelope), sender_domain):
                    return "spf"
    return None


def authenticate(settings: Settings, mail: ParsedMail, *, token_valid: bool) -> Authentication:
    if not token_valid:
        return Authentication(False, "no reply token valid for this agent and ticket")
    sender_domain = _domain_of(mail.sender)
    trusted = [d.lower() for d in settings.conversation.trusted_domains]
    if any(_aligned(d, sender_domain) for d in trusted):
        passed = authentication_results_pass(settings, mail)
        if passed is None:
            return Authentication(False, f"no DKIM or SPF pass for {sender_domain} in Authentication-Results")
        return Authentication(True, f"reply token and {passed}=pass")
    return Authentication(True, "reply token")


def authenticate_note(settings: Settings, mail: ParsedMail, *, token_valid: bool) -> Authentication:
    """A note sent to the comment address carries no token: for a trusted domain, DKIM/SPF vouches alone."""
    auth = authenticate(settings, mail, token_valid=token_valid)
    sender_domain = _domain_of(mail.sender)
    if auth.ok or not any(_aligned(d.lower(), sender_domain) for d in settings.conversation.trusted_domains):
        return auth
    passed = authentication_results_pass(settings, mail)
    return Authentication(True, f"{passed}=pass") if passed else auth


# -- applying commands ----------------------------------------------------------------------------

_KINDS = {
    "incident": TicketKind.INCIDENT,
    "request": TicketKind.SERVICE_REQUEST,
    "service_request": TicketKind.SERVICE_REQUEST,
    "service request": TicketKind.SERVICE_REQUEST,
}


class CommandError(Exception):
    """A command that cannot be applied; the message says why."""


def _fields(session: Session, settings: Settings, agent: Contact, command: Command) -> dict[str, object]:
    arg = command.argument.strip()
    if command.verb is Verb.RESOLVE:
        return {"status": TicketStatus.RESOLVED}
    if command.verb is Verb.CLOSE:
        return {"status": TicketStatus.CLOSED}
    if command.verb is Verb.PRIORITY:
        value = arg.upper()
        if value not in DESK_PRIORITIES:
            raise CommandError(f"priority must be P1..P5, not {arg!r}")
        return {"priority": value}
    if command.verb is Verb.KIND:
        kind = _KINDS.get(arg.lower())
        if kind is None:
            raise CommandError(f"kind must be incident or request, not {arg!r}")
        return {"kind": kind}
    if command.verb is Verb.CATEGORY:
        if not arg or len(arg) > 80:
            raise CommandError("category needs a name of at most 80 characters")
        return {"category": arg.lower()}
    if command.verb is Verb.ASSIGN:
        address = agent.email if arg.lower() == "me" else arg.strip("<>").lower()
        assignee = conversation.staff_contact(session, settings, address)
        if assignee is None:
            raise CommandError(f"{arg!r} is not an agent")
        return {"assignee": assignee}
    raise CommandError(f"unknown command {command.line!r}")


def _fulfilment(session: Session, settings: Settings, ticket: Ticket, agent: Contact, command: Command) -> str:
    """``#done N`` and ``#fulfilled``: the request fulfilment service checks and audits them."""
    if command.verb is Verb.FULFILLED:
        fulfilment.fulfil(session, settings, ticket, agent)
        return "request fulfilled, the requester is told"
    number = command.argument.strip().lstrip("#")
    if not number.isdigit():
        raise CommandError(f"#done needs a step number, not {command.argument!r}")
    checklist = fulfilment.complete_step(session, ticket, int(number) - 1, agent)
    left = sum(1 for c in checklist if not c.get("done_at"))
    return f"step {number} ({checklist[int(number) - 1]['step']}) done, {left} left"


def _merge(session: Session, settings: Settings, ticket: Ticket, agent: Contact, command: Command) -> str:
    """``#merge N``: this ticket (the duplicate) goes into #N."""
    number = command.argument.strip().lstrip("#")
    try:
        target, _ = merge.merge_into(session, settings, [ticket.id], int(number) if number.isdigit() else 0, agent)
    except merge.NoTarget:
        raise CommandError(f"#merge needs the number of a ticket to merge into, not {command.argument!r}") from None
    return f"merged into #{target.id}"


def _macro(
    session: Session, settings: Settings, ticket: Ticket, agent: Contact, command: Command, *, lead: str = "",
    files: Sequence[OutboundAttachment] = (),
) -> tuple[str, Message]:
    """``#macro NAME``: the canned reply (after ``lead``, the agent's own text) goes to requester and watchers."""
    done = macros.apply_named(session, settings, command.argument, ticket, agent, lead=lead, attachments=files)
    changed = ", ".join(f"{k} -> {v}" for k, v in done.changed.items())
    return "reply sent" + (f", {changed}" if changed else ""), done.reply


def _reply(
    session: Session, settings: Settings, ticket: Ticket, agent: Contact, text: AgentText,
    files: Sequence[OutboundAttachment],
) -> tuple[Message, Command | None, str]:
    """An agent's authenticated reply; with ``#macro NAME`` among the commands, the canned text follows it in the
    same mail. Returns the reply, the macro command it used (None: a plain reply) and that command's outcome."""
    command = next((c for c in text.ticket_commands if c.verb is Verb.MACRO), None)
    if command is not None:
        try:
            outcome, sent = _macro(session, settings, ticket, agent, command, lead=text.body, files=files)
            return sent, command, f"{command.line}: {outcome}"
        except (CommandError, tickets.TicketError) as exc:
            return tickets.reply(session, settings, ticket, agent, text.body, attachments=files), command, \
                f"{command.line}: not applied, {exc}"
    return tickets.reply(session, settings, ticket, agent, text.body, attachments=files), None, ""


def _set_field(session: Session, ticket: Ticket, agent: Contact, command: Command) -> str:
    """``#set KEY=VALUE``: checked as the console checks it (a choice in the list, a date, an agent)."""
    key, equals, value = command.argument.partition("=")
    if not equals or not key.strip():
        raise CommandError("#set needs KEY=VALUE, e.g. #set site=Berlin")
    key = key.strip().lower()
    if not custom_fields.set_value(session, ticket, agent.email, key, value):
        return "no change"
    return f"{key} -> {custom_fields.ticket_values(ticket).get(key, '(none)')}"


def _group(session: Session, ticket: Ticket, agent: Contact, command: Command) -> str:
    name = command.argument.strip()
    if not name:
        raise CommandError("#group needs a group name, or none")
    wanted = None if name.lower() == "none" else name
    changed = groups.assign(session, ticket, agent.email, wanted, reason=f"by email: {command.line}")
    return f"group -> {ticket.group or '(none)'}" if changed else "no change"


def apply_commands(
    session: Session, settings: Settings, ticket: Ticket, agent: Contact, commands: list[Command]
) -> list[str]:
    """Apply each command (audited through tickets.change); one line of outcome per command."""
    outcomes: list[str] = []
    for command in commands:
        try:
            if command.verb in (Verb.DONE, Verb.FULFILLED):
                outcomes.append(f"{command.line}: " + _fulfilment(session, settings, ticket, agent, command))
                continue
            if command.verb is Verb.MERGE:
                outcomes.append(f"{command.line}: " + _merge(session, settings, ticket, agent, command))
                continue
            if command.verb is Verb.MACRO:
                outcomes.append(f"{command.line}: " + _macro(session, settings, ticket, agent, command)[0])
                continue
            if command.verb is Verb.SET:
                outcomes.append(f"{command.line}: " + _set_field(session, ticket, agent, command))
                continue
            if command.verb is Verb.GROUP:
                outcomes.append(f"{command.line}: " + _group(session, ticket, agent, command))
                continue
            fields = _fields(session, settings, agent, command)
            changed = processes.staff_change(session, settings, ticket, agent, fields, reason=f"by email: {command.line}")
        except (CommandError, tickets.TicketError, fulfilment.FulfilmentError, custom_fields.FieldError) as exc:
            outcomes.append(f"{command.line}: not applied, {exc}")
            continue
        if not changed:
            outcomes.append(f"{command.line}: no change")
            continue
        outcomes.append(f"{command.line}: " + ", ".join(f"{k} -> {v}" for k, v in changed.items()))
    return outcomes


# -- an agent's mail on a ticket ------------------------------------------------------------------


class AgentMailKind(enum.Enum):
    REPLY = "reply"  # sent to requester and watchers
    NOTE = "note"  # internal
    WITHHELD = "withheld"  # meant as a reply, but not authenticated: kept internal
    COMMANDS_ONLY = "commands only"


@dataclass
class AgentMailResult:
    kind: AgentMailKind
    authenticated: bool
    outcomes: list[str] = field(default_factory=list)


def handle_agent_mail(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    agent: Contact,
    mail: ParsedMail,
    *,
    inbound_id: int | None,
    attachments: list[Attachment],
    token_valid: bool,
    text: AgentText | None = None,
) -> AgentMailResult:
    text = text or split_commands(mail.reply_text or mail.text)
    internal = text.note or any(conversation.is_comment_address(settings, a.address) for a in [*mail.to, *mail.cc])
    auth = authenticate(settings, mail, token_valid=token_valid)
    notes: list[str] = []
    if not text.body and not attachments:
        kind = AgentMailKind.COMMANDS_ONLY
    elif internal or not auth.ok:
        kind = AgentMailKind.NOTE if internal else AgentMailKind.WITHHELD
        # Anyone can send mail from an agent's address: a note that proves nothing says so.
        proven = authenticate_note(settings, mail, token_valid=token_valid).ok if internal else auth.ok
        _internal_copy(session, ticket, mail, text, inbound_id=inbound_id, attachments=attachments, authenticated=proven)
        if kind is AgentMailKind.WITHHELD:
            notes.append(f"The mail from {agent.email} above was not sent to the requester: {auth.reason}.")
    else:
        kind = AgentMailKind.REPLY
        files, too_big = fit_attachments(settings, load_attachments(settings, attachments))
        reply, used, outcome = _reply(session, settings, ticket, agent, text, files)
        if used is not None:  # done with the reply: not run again below
            text = replace(text, commands=[c for c in text.commands if c is not used])
            notes.append(f"Commands from {agent.email} ({auth.reason}):\n{outcome}")
        reply.inbound_id = inbound_id
        reply.authenticated = True
        reply.attachments.extend(attachments)
        if too_big:
            notes.append("Not mailed to the requester, over the size limit (kept on the ticket): " + ", ".join(too_big))
    outcomes, said = _run_commands(session, settings, ticket, agent, auth, text.ticket_commands)
    for note in notes + said:
        _system_note(session, settings, ticket, note)
    return AgentMailResult(kind, auth.ok, outcomes)


def _run_commands(
    session: Session, settings: Settings, ticket: Ticket, agent: Contact | None, auth: Authentication,
    commands: list[Command], *, sender: str | None = None,
) -> tuple[list[str], list[str]]:
    """Apply an agent's authenticated commands; (outcomes, the internal notes saying what happened)."""
    if not commands:
        return [], []
    listed = "\n".join(c.line for c in commands)
    if agent is None:
        return [], [f"Commands from {sender} ignored: only agents may use them.\n{listed}"]
    if not auth.ok:
        return [], [f"Commands from {agent.email} ignored: {auth.reason}.\n{listed}"]
    outcomes = apply_commands(session, settings, ticket, agent, commands)
    return outcomes, [f"Commands from {agent.email} ({auth.reason}):\n" + "\n".join(outcomes)]


def _internal_copy(
    session: Session, ticket: Ticket, mail: ParsedMail, text: AgentText, *, inbound_id: int | None,
    attachments: list[Attachment], authenticated: bool | None = None,
) -> Message:
    """Keep a mail on the ticket for agents only, without its command lines (the notes list them)."""
    message = tickets.message_from_mail(mail, inbound_id=inbound_id, internal=True)
    message.text = message.reply_text = text.body
    message.authenticated = authenticated
    message.attachments.extend(attachments)
    return tickets.append_message(session, ticket, message)


def handle_refused_mail(
    session: Session, settings: Settings, ticket: Ticket, sender: str, mail: ParsedMail, text: AgentText, *,
    inbound_id: int | None, attachments: list[Attachment],
) -> None:
    """Command lines from someone who takes no part in the ticket: kept internal, nothing applied."""
    _internal_copy(session, ticket, mail, text, inbound_id=inbound_id, attachments=attachments)
    listed = "\n".join(c.line for c in text.commands) or "#note"
    _system_note(session, settings, ticket,
                 f"Commands from {sender} ignored: {sender} takes no part in this ticket.\n{listed}")


def _system_note(session: Session, settings: Settings, ticket: Ticket, text: str) -> Message:
    note = Message(
        direction=Direction.IN,
        internal=True,
        from_address=settings.address,
        from_name="helpdesk",
        subject=ticket.subject,
        text=text,
        created_at=utcnow(),
    )
    return tickets.append_message(session, ticket, note)


# -- approvals by email ---------------------------------------------------------------------------
# An approver answers the approval request with ``#approve [why]`` or ``#reject REASON``, anywhere in
# the block of command lines at the top; a ``#reject`` alone takes the first paragraph below it as
# REASON, and without one it is not applied. The same authentication as agent commands applies; the
# policy (only approvers, never one's own request or access) is core.approval's, and a refusal is
# audited and explained in an internal note. Other commands in the block follow the agent rules.


@dataclass(frozen=True)
class ApprovalResult:
    decided: bool
    outcome: str


def handle_approval_mail(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    decider: Contact,
    mail: ParsedMail,
    command: ApprovalCommand,
    *,
    inbound_id: int | None,
    attachments: list[Attachment],
    token_valid: bool,
    text: AgentText | None = None,
    agent: Contact | None = None,
) -> ApprovalResult:
    """Decide the ticket's pending approval from a mail; the mail itself stays internal.

    ``text``: the whole parsed reply, whose other commands apply when ``agent`` (the sender, if an
    agent on this ticket) is authenticated.
    """
    text = text or split_commands(mail.reply_text or mail.text)
    auth = authenticate(settings, mail, token_valid=token_valid)
    _internal_copy(session, ticket, mail, text, inbound_id=inbound_id, attachments=attachments, authenticated=auth.ok)
    if not auth.ok:
        result = ApprovalResult(False, f"ignored: {auth.reason}")
        audit.record(
            session, actor=decider.email, action="approval.ignored", object_type="ticket", object_id=ticket.id,
            reason=f"{command.line}: {auth.reason}",
        )
    else:
        result = _decide_by_mail(session, settings, ticket, decider, command)
    _system_note(session, settings, ticket, f"{command.line} from {decider.email} ({auth.reason}): {result.outcome}")
    _, said = _run_commands(session, settings, ticket, agent, auth, text.ticket_commands, sender=decider.email)
    for note in said:
        _system_note(session, settings, ticket, note)
    return result


def _decide_by_mail(
    session: Session, settings: Settings, ticket: Ticket, decider: Contact, command: ApprovalCommand
) -> ApprovalResult:
    verb = "approved" if command.approve else "rejected"
    if not command.approve and not command.reason:
        why = "#reject needs a reason for the requester, after #reject or on the line below"
        audit.record(
            session, actor=decider.email, action="approval.ignored", object_type="ticket", object_id=ticket.id,
            reason=f"{command.line}: {why}",
        )
        return ApprovalResult(False, f"not applied: {why}")
    if command.reason_below:
        verb += f", reason taken from the text below #reject: {command.reason}"
    request = session.scalars(
        select(AccessRequest).where(AccessRequest.ticket_id == ticket.id, AccessRequest.status == AccessStatus.PENDING)
    ).first()
    try:
        if request is not None:
            access.decide(session, settings, request, decider, command.approve, command.reason)
        else:
            fulfilment.decide(session, settings, ticket, decider, command.approve, command.reason)
    except PolicyViolation as exc:  # already audited by the service
        return ApprovalResult(False, f"refused: {exc}")
    except (access.AccessError, fulfilment.FulfilmentError) as exc:
        return ApprovalResult(False, f"not applied: {exc}")
    return ApprovalResult(True, verb)
