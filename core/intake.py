"""Intake: store every arriving mail first, then turn it into a ticket, a reply, or a quarantine entry.

One mail, step by step (the README's "What happens to a mail"):
store -> parse -> loop guard -> de-duplicate -> thread -> classify/open or append -> notify.
Any failure after the store quarantines that one mail with its reason; its raw bytes stay.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, event, or_, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import (
    audit,
    contacts,
    conversation,
    csat,
    events,
    i18n,
    locks,
    loopguard,
    mailcommands,
    processes,
    tickets,
)
from helpdesk.core.attachments import store_for
from helpdesk.core.catalogue import catalogue_for
from helpdesk.core.classify import Classification, ClassKind, RuleSet, classify
from helpdesk.core.db import transaction
from helpdesk.core.identity import fingerprint, header_message_id, usable_message_id
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import (
    Attachment,
    Contact,
    Inbound,
    InboundStatus,
    Message,
    Outbox,
    RawMail,
    Ticket,
    TicketKind,
    utcnow,
)
from helpdesk.core.notify import AutoSubmitted, enqueue, notify_agents, public_recipients
from helpdesk.core.retry import RetryPolicy, is_transient
from helpdesk.core.settings import Settings
from helpdesk.core.sharing import Sharing, hold_claims, release_claims, sharing, worker_connection

log = logging.getLogger(__name__)

Parser = Callable[[bytes], ParsedMail]

_KINDS = {
    ClassKind.INCIDENT: TicketKind.INCIDENT,
    ClassKind.SERVICE_REQUEST: TicketKind.SERVICE_REQUEST,
    ClassKind.ACCESS_REQUEST: TicketKind.ACCESS_REQUEST,
}


@dataclass(frozen=True)
class _Earlier:
    copy: Inbound | None = None  # the same mail, processed before
    reused_by: int | None = None  # an earlier, different mail under the same Message-ID


@dataclass(frozen=True)
class IntakeResult:
    inbound_id: int
    status: InboundStatus
    ticket_id: int | None = None
    created: bool = False
    reason: str | None = None


class Intake:
    """The intake service, with its dependencies passed in (the parser comes from the mail gateway)."""

    def __init__(self, settings: Settings, rules: RuleSet, parse: Parser) -> None:
        self.settings = settings
        self.rules = rules
        self.parse = parse
        self.attachments = store_for(settings)
        self.catalogue = catalogue_for(settings)
        self.retry = RetryPolicy()
        self._max_watchers = settings.conversation.max_watchers
        # Set when a transaction that stored mail commits: wakes the processing worker of this process.
        self.arrived = threading.Event()

    # -- step 1: store -------------------------------------------------------------------------
    def store(
        self,
        session: Session,
        raw: bytes,
        *,
        source: str,
        uidvalidity: int | None = None,
        uid: int | None = None,
    ) -> Inbound | None:
        """Record the raw bytes. Returns None if this (mailbox, uidvalidity, uid) is already stored."""
        [inbound] = self.store_many(session, [(uid, raw)], source=source, uidvalidity=uidvalidity)
        return inbound

    def store_many(
        self, session: Session, mails: list[tuple[int | None, bytes]], *, source: str, uidvalidity: int | None = None
    ) -> list[Inbound | None]:
        """Record a batch of (uid, raw bytes) with a few statements; None for a UID already stored."""
        uids = [uid for uid, _ in mails if uid is not None]
        seen = set(
            session.scalars(
                select(Inbound.uid).where(
                    Inbound.source == source, Inbound.uidvalidity == uidvalidity, Inbound.uid.in_(uids)
                )
            )
        ) if uids else set()
        digests = [hashlib.sha256(raw).hexdigest() for _, raw in mails]
        known = set(session.scalars(select(RawMail.sha256).where(RawMail.sha256.in_(set(digests)))))
        stored: list[Inbound | None] = []
        for (uid, raw), digest in zip(mails, digests, strict=True):
            if uid is not None and uid in seen:
                stored.append(None)
                continue
            seen.add(uid)
            if digest not in known:
                session.add(RawMail(sha256=digest, size=len(raw), data=raw))
                known.add(digest)
            inbound = Inbound(
                source=source,
                uidvalidity=uidvalidity,
                uid=uid,
                sha256=digest,
                message_id=header_message_id(raw),
                fingerprint=fingerprint(raw),
                status=InboundStatus.NEW,
            )
            session.add(inbound)
            stored.append(inbound)
        session.flush()
        if any(inbound is not None for inbound in stored):
            event.listen(session, "after_commit", self._wake, once=True)
        return stored

    def _wake(self, _session: Session) -> None:
        self.arrived.set()

    # -- steps 2..: process ----------------------------------------------------------------------
    def process(self, session: Session, inbound: Inbound) -> IntakeResult:
        """Process one stored mail. Never raises for a bad mail: it ends up quarantined instead."""
        try:
            # The bytes only, no RawMail object: a batch must not keep every raw mail in memory.
            mail = self.parse(session.execute(_RAW, {"sha": inbound.sha256}).scalar_one())
        except Exception as exc:  # noqa: BLE001 - any parser failure: keep the mail, say why
            if is_transient(exc):
                return self.retry_later(session, inbound, exc)
            return self._quarantine(session, inbound, f"unreadable: {_why(exc)}")
        mail = _usable_ids(mail)
        try:
            with session.begin_nested():
                result = self._process_parsed(session, inbound, mail)
        except Exception as exc:
            if is_transient(exc):
                return self.retry_later(session, inbound, exc)
            log.exception("processing inbound %s failed", inbound.id)
            return self._quarantine(session, inbound, f"processing failed: {_why(exc)}")
        return result

    def retry_later(self, session: Session, inbound: Inbound, exc: BaseException) -> IntakeResult:
        """A failure of the database or the disk, not of the mail: try again after a delay, or give up.

        (If the database itself is gone, recording this fails too; the run then counts as unfinished.)
        """
        inbound.retries += 1
        why = _why(exc)
        if inbound.retries >= self.retry.max_retries:
            return self._quarantine(session, inbound, f"failed {inbound.retries} times for a transient cause: {why}")
        delay = self.retry.delay(inbound.retries)
        inbound.retry_at = utcnow() + delay
        inbound.reason = f"transient failure, try {inbound.retries} of {self.retry.max_retries}: {why}"[:4000]
        log.warning("inbound %s: %s; trying again in %.0f s", inbound.id, inbound.reason, delay.total_seconds())
        session.flush()
        return IntakeResult(inbound.id, InboundStatus.NEW, reason=inbound.reason)

    def _process_parsed(self, session: Session, inbound: Inbound, mail: ParsedMail) -> IntakeResult:
        if mail.message_id and mail.message_id != inbound.message_id:
            inbound.message_id = mail.message_id  # (an unchanged assignment would still cost a flush)
        earlier = self._earlier_copy(session, inbound)
        if earlier.copy is not None:
            return self._finish(
                inbound, InboundStatus.DUPLICATE, earlier.copy.ticket_id, reason=f"same mail as inbound {earlier.copy.id}",
                duplicate_of=earlier.copy.id,
            )
        result = self._route(session, inbound, mail)
        if earlier.reused_by is not None:
            result = self._note_reuse(session, inbound, result, earlier.reused_by)
        return result

    def _route(self, session: Session, inbound: Inbound, mail: ParsedMail) -> IntakeResult:
        verdicts = loopguard.judge(
            mail,
            own_addresses=self.own_addresses(),
            is_own_message_id=lambda mid: conversation.is_our_message_id(self.settings, mid),
        )
        if verdicts.own_mail:
            return self._finish(inbound, InboundStatus.IGNORED, reason="our own mail: " + "; ".join(verdicts.reasons))
        if verdicts.bounce or verdicts.feedback_report or verdicts.delay:
            kind = "bounce" if verdicts.bounce else "feedback report" if verdicts.feedback_report else "delay notice"
            return self._bounce(session, inbound, mail, kind=kind)
        if not verdicts.automatic:
            self._delivers_again(session, inbound, mail)

        if not verdicts.mailing_list and (why := conversation.list_copy(self.settings, mail, self.own_addresses())):
            verdicts = replace(verdicts, mailing_list=True, reasons=(*verdicts.reasons, f"list-copy: {why}"))
        match = conversation.find_ticket(session, self.settings, mail)
        if match is None and (alert := events.parse_alert(mail, self.settings.events)) is not None:
            return self._event(session, inbound, mail, alert)
        routing = conversation.route(self.settings, mail, match, verdicts)
        if routing.action is conversation.Action.APPEND and match is not None:
            return self._append(session, inbound, mail, match, verdicts)
        if routing.action is conversation.Action.RECORD:
            # An automatic mail that answers nothing of ours: record it, open nothing, answer nothing.
            return self._finish(inbound, InboundStatus.IGNORED, reason=routing.reason)
        linked = routing.ticket.id if routing.ticket is not None else None
        return self._open(session, inbound, mail, may_answer=loopguard.may_auto_answer(mail, verdicts), linked=linked,
                          list_mail=verdicts.mailing_list)

    def _open(
        self, session: Session, inbound: Inbound, mail: ParsedMail, *, may_answer: bool, linked: int | None,
        list_mail: bool = False,
    ) -> IntakeResult:
        found = classify(mail, self.rules, recipient=self._recipient(mail))
        if found.kind is ClassKind.EVENT:
            # Monitoring mail that no alert parser read: still a ticket, but an answer would go to a tool.
            may_answer = False
        if not mail.sender:
            # No From, Sender, Reply-To, Return-Path or mbox line with an address: no one to answer.
            return self._quarantine(session, inbound, "no sender: no usable address in From, Sender, "
                                    "Reply-To, Return-Path or the mbox From line")
        requester = tickets.contact_for(session, mail.from_ or mail.sender)
        if may_answer:  # a person's mail: their language is what the desk answers in
            contacts.learn_language(session, requester, mail)
        message = self._new_message(inbound, mail)
        ticket = tickets.open_ticket(
            session,
            requester=requester,
            subject=mail.subject,
            kind=_KINDS.get(found.kind, TicketKind.INCIDENT),
            category=found.category,
            impact=found.impact,
            urgency=found.urgency,
            priority=found.priority,
            catalogue_item=found.catalogue_item,
            group=found.group,
            classification=found.as_json(),
            linked_ticket_id=linked,
            first_message=message,
        )
        item = processes.settle_kind(session, self.catalogue, ticket, mail)  # the acknowledgement names the kind
        if not may_answer:
            csat.exclude(session, ticket, csat.AUTOMATIC_SENDER)  # nor asked, when resolved, how we did
        if not list_mail:  # a list's address must never get our public replies
            tickets.add_watchers(session, ticket, self._other_recipients(mail), limit=self._max_watchers)
        # What is pending now (the ticket's audit entry) goes in with the mail's last flush: none of it
        # changes who the agents are, whom the mail goes to, the rate limit's count or the thread it answers.
        with session.no_autoflush:
            notify_agents(session, self.settings, ticket, message, new=True)
            if may_answer:
                self._acknowledge(session, ticket, requester, mail, found)
        processes.start(session, self.settings, ticket, mail, item)  # after the acknowledgement
        log.info("inbound %s opened ticket %s (%s)", inbound.id, ticket.id, found.explain())
        return self._finish(inbound, InboundStatus.PROCESSED, ticket.id, created=True)

    def _acknowledge(
        self, session: Session, ticket: Ticket, requester: Contact, mail: ParsedMail, found: Classification
    ) -> None:
        """The requester's acknowledgement of a new ticket, into the outbox (written at the mail's next flush)."""
        enqueue(
            session,
            self.settings,
            template="acknowledgement",
            ticket=ticket,
            to=[requester.email],
            context={
                "requester_name": requester.name,
                "kind_label": tickets.KIND_LABELS[ticket.kind],
                "classification": found.explain(),
                # Files over the size limit: the user learns which ones did not reach us.
                "not_kept": [p.filename for p in mail.attachments if p.omitted_size is not None],
                "size_limit": _megabytes(self.settings.max_message_bytes),
            },
            auto_submitted=AutoSubmitted.AUTO_REPLIED,
            in_reply_to=mail.message_id,
            flush=False,
        )

    def _append(
        self, session: Session, inbound: Inbound, mail: ParsedMail, match: conversation.ThreadMatch,
        verdicts: loopguard.Verdicts,
    ) -> IntakeResult:
        ticket = match.ticket
        automatic = verdicts.automatic and not verdicts.mailing_list
        # Every command line at the top (ticket commands, #approve/#reject, #done, #note) is read as one block.
        text = None if automatic else mailcommands.split_commands(mail.reply_text or mail.text)
        outsider_commands = text is not None and text.has_commands and not match.participant
        if not automatic and not outsider_commands:
            # (Command lines from outside the ticket are refused below: they make nobody a watcher.)
            if not match.participant and match.vouched:
                # Knew the exact Message-ID of our mail (or a token), so saw the thread: joins, visibly.
                tickets.add_watchers(session, ticket, [mail.sender], limit=self._max_watchers)
            if not verdicts.mailing_list:
                tickets.add_watchers(session, ticket, self._other_recipients(mail), limit=self._max_watchers)
        agent = None if automatic else conversation.staff_contact(session, self.settings, mail.sender)
        if agent is not None and agent.id == ticket.requester_id:
            agent = None  # an agent asking for help writes as a user
        if text is not None and (approval := text.approval) is not None:
            # ``#approve``/``#reject``: whoever sends it, the approval policy decides (and audits a refusal).
            decision = mailcommands.handle_approval_mail(
                session, self.settings, ticket, tickets.contact_for(session, mail.from_ or mail.sender), mail,
                approval, inbound_id=inbound.id, attachments=self._attachments(mail), token_valid=match.token_valid,
                text=text, agent=agent,
            )
            reason = f"approval by mail via {match.via.value}: {decision.outcome}"
            return self._finish(inbound, InboundStatus.PROCESSED, ticket.id, reason=reason)
        if agent is not None:
            mailcommands.handle_agent_mail(
                session, self.settings, ticket, agent, mail,
                inbound_id=inbound.id, attachments=self._attachments(mail), token_valid=match.token_valid, text=text,
            )
        elif outsider_commands and text is not None:
            mailcommands.handle_refused_mail(
                session, self.settings, ticket, mail.sender, mail, text,
                inbound_id=inbound.id, attachments=self._attachments(mail),
            )
        else:
            # A vacation note or other automatic answer is kept for agents, but reopens and notifies nothing.
            message = self._new_message(inbound, mail, internal=automatic)
            if automatic:
                tickets.append_message(session, ticket, message)
            else:
                tickets.user_wrote(session, self.settings, ticket, message)  # as a reply in the portal
        log.info("inbound %s appended to ticket %s via %s", inbound.id, ticket.id, match.via.value)
        return self._finish(inbound, InboundStatus.PROCESSED, ticket.id, reason=f"threaded via {match.via.value}")

    def _event(self, session: Session, inbound: Inbound, mail: ParsedMail, alert: events.Alert) -> IntakeResult:
        """Monitoring mail: event management decides; never acknowledged."""
        group = classify(mail, self.rules, recipient=self._recipient(mail)).group  # the rules route alerts too
        outcome = events.handle_alert(session, self.settings, alert, mail=mail, inbound_id=inbound.id, group=group)
        ticket_id = outcome.ticket.id if outcome.ticket is not None else None
        reason = f"event {alert.source} {alert.host} {alert.state}: {outcome.action.value}"
        return self._finish(inbound, InboundStatus.PROCESSED if ticket_id else InboundStatus.IGNORED, ticket_id, reason=reason)

    def _bounce(self, session: Session, inbound: Inbound, mail: ParsedMail, *, kind: str = "bounce") -> IntakeResult:
        """A bounce, feedback report or delay notice: kept on the ticket whose mail it reports; only a bounce flags."""
        ticket, sent_to = None, set[str]()
        for mid in loopguard.bounced_message_ids(mail):
            for recipients in session.scalars(select(Outbox.recipients).where(Outbox.message_id == mid)):
                sent_to.update(a.lower() for a in recipients)
            ticket_id = session.scalars(select(Message.ticket_id).where(Message.message_id == mid)).first()
            if ticket_id is None:
                ticket_id = conversation.ticket_from_message_id(self.settings, mid)
            if ticket_id is not None and (ticket := session.get(Ticket, ticket_id)) is not None:
                break
        if ticket is None:
            # Flags nobody: a bounce of no mail of ours may be forged, and silencing someone is for good.
            return self._finish(inbound, InboundStatus.IGNORED, reason=f"{kind} of no known mail")
        mailed = sent_to or {a.lower() for a in public_recipients(self.settings, ticket)}
        for address in loopguard.failed_recipients(mail) if kind == "bounce" else []:
            if address not in mailed:
                continue  # only someone the bounced mail went to
            contact = session.scalars(select(Contact).where(Contact.email == address)).first()
            if contact is not None and not contact.undeliverable:
                contact.undeliverable = True
                log.info("inbound %s: mail to %s bounced; no more automatic mail to it until it writes in", inbound.id, address)
        message = tickets.message_from_mail(mail, inbound_id=inbound.id, internal=True)
        tickets.append_message(session, ticket, message)
        return self._finish(inbound, InboundStatus.PROCESSED, ticket.id, reason=f"{kind} attached")

    # -- helpers -------------------------------------------------------------------------------
    def _delivers_again(self, session: Session, inbound: Inbound, mail: ParsedMail) -> None:
        """Someone whose address bounced writes in themselves: their mailbox works again."""
        address = (mail.from_.address if mail.from_ else mail.sender or "").lower()
        contact = session.scalars(_UNDELIVERABLE, {"email": address}).first()
        if contact is not None:
            contact.undeliverable = False
            log.info("inbound %s: %s wrote in, so mail to it is delivered again", inbound.id, address)

    def _new_message(self, inbound: Inbound, mail: ParsedMail, *, internal: bool = False) -> Message:
        message = tickets.message_from_mail(mail, inbound_id=inbound.id, internal=internal)
        message.attachments.extend(self._attachments(mail))
        return message

    def _attachments(self, mail: ParsedMail) -> list[Attachment]:
        found = []
        limit = _megabytes(self.settings.max_message_bytes)
        for part in mail.attachments:
            stored = bool(part.data)
            note = None
            if part.omitted_size is not None:
                note = f"not kept: about {_megabytes(part.omitted_size)}, over the size limit of {limit} per mail"
            elif not stored:
                note = "not stored: empty"
            found.append(
                Attachment(
                    filename=part.filename,
                    content_type=part.content_type,
                    size=len(part.data),
                    sha256=self.attachments.put(part.data) if stored else None,
                    content_id=part.content_id,
                    note=note,
                )
            )
        return found

    def _earlier_copy(self, session: Session, inbound: Inbound) -> _Earlier:
        """The same mail arrived before (CC to two help addresses, a re-fetch), or another one under its Message-ID.

        Same Message-ID and the same bytes or fingerprint is a copy; same Message-ID alone is a reuse
        (a device or tool that gives every mail one ID, or someone copying an ID): processed, noted.
        """
        # Two workers holding two copies must not both find "no earlier copy": the second waits here
        # until the first commits, then sees its copy.
        locks.serialise(session, f"inbound:{inbound.message_id or inbound.sha256}")
        if not inbound.message_id:
            query = _EARLIER.where(Inbound.sha256 == inbound.sha256).limit(1)
            return _Earlier(copy=session.scalars(query, {"me": inbound.id}).first())
        mine = inbound.fingerprint
        if not mine:  # (assigning the value it has would still cost a flush)
            mine = inbound.fingerprint = self._fingerprint(session, inbound)
        first = session.scalars(_FIRST_UNDER_ID, {"me": inbound.id, "mid": inbound.message_id}).first()
        if first is None:
            return _Earlier()  # a Message-ID not seen before (most mail): one statement
        evidence = or_(Inbound.sha256 == inbound.sha256, Inbound.fingerprint == mine, Inbound.fingerprint.is_(None))
        query = _EARLIER.where(Inbound.message_id == bindparam("mid"), evidence)
        for row in session.scalars(query, {"me": inbound.id, "mid": inbound.message_id}):
            if row.fingerprint is None:  # stored before fingerprints were kept
                row.fingerprint = self._fingerprint(session, row)
            if row.sha256 == inbound.sha256 or row.fingerprint == mine:
                return _Earlier(copy=row)
        return _Earlier(reused_by=first)

    @staticmethod
    def _fingerprint(session: Session, inbound: Inbound) -> str:
        return fingerprint(session.scalar(_RAW, {"sha": inbound.sha256}) or b"")

    def _note_reuse(self, session: Session, inbound: Inbound, result: IntakeResult, earlier_id: int) -> IntakeResult:
        """A different mail under an earlier mail's Message-ID: visible on the inbound row and the ticket's trail."""
        note = f"Message-ID reused (also inbound {earlier_id}): a different mail, processed on its own"
        log.warning("inbound %s: %s <%s>", inbound.id, note, inbound.message_id)
        inbound.reason = f"{note}; {inbound.reason}" if inbound.reason else note
        if result.ticket_id is not None:
            audit.record(
                session, actor="intake", action="inbound.message_id_reused", object_type="ticket",
                object_id=result.ticket_id, after={"inbound": inbound.id, "message_id": inbound.message_id,
                                                   "also_inbound": earlier_id}, reason=note,
            )
        return replace(result, reason=inbound.reason)

    def own_addresses(self) -> set[str]:
        return conversation.own_addresses(self.settings)

    def _is_ours(self, address: str) -> bool:
        return address in self.own_addresses() or conversation.parse_reply_address(self.settings, address) is not None

    def _recipient(self, mail: ParsedMail) -> str | None:
        ours = [a.address for a in [*mail.to, *mail.cc] if self._is_ours(a.address)]
        return ours[0] if ours else None

    def _other_recipients(self, mail: ParsedMail) -> list[str]:
        return [
            a.address
            for a in [*mail.to, *mail.cc]
            if a.address and not self._is_ours(a.address) and a.address != mail.sender
        ]

    def _finish(
        self,
        inbound: Inbound,
        status: InboundStatus,
        ticket_id: int | None = None,
        *,
        created: bool = False,
        reason: str | None = None,
        duplicate_of: int | None = None,
    ) -> IntakeResult:
        inbound.status = status
        inbound.ticket_id = ticket_id
        inbound.reason = reason
        inbound.duplicate_of_id = duplicate_of
        inbound.processed_at = utcnow()
        return IntakeResult(inbound.id, status, ticket_id, created, reason)

    def _quarantine(self, session: Session, inbound: Inbound, reason: str) -> IntakeResult:
        log.warning("inbound %s quarantined: %s", inbound.id, reason)
        # (PostgreSQL stores no NUL: a reason quoting the mail must not make the quarantine fail.)
        result = self._finish(inbound, InboundStatus.QUARANTINED, reason=reason.replace("\x00", "\\x00")[:4000])
        session.flush()
        return result


# Built once (building a statement costs about as much as running one; these run for every mail).
_EARLIER = (
    select(Inbound)
    .where(Inbound.id != bindparam("me"), Inbound.status.in_((InboundStatus.PROCESSED, InboundStatus.IGNORED)))
    .order_by(Inbound.id)
)
_FIRST_UNDER_ID = _EARLIER.where(Inbound.message_id == bindparam("mid")).with_only_columns(Inbound.id).limit(1)
_RAW = select(RawMail.data).where(RawMail.sha256 == bindparam("sha"))  # the bytes only, no RawMail object
_UNDELIVERABLE = select(Contact).where(Contact.email == bindparam("email"), Contact.undeliverable.is_(True))


def _usable_ids(mail: ParsedMail) -> ParsedMail:
    """The mail without the Message-IDs (its own, or those it answers) that cannot be stored or matched."""
    references = [r for r in mail.references if usable_message_id(r)]
    if (usable_message_id(mail.message_id) == mail.message_id and usable_message_id(mail.in_reply_to) == mail.in_reply_to
            and len(references) == len(mail.references)):
        return mail  # the common case: nothing to copy
    return replace(mail, message_id=usable_message_id(mail.message_id), in_reply_to=usable_message_id(mail.in_reply_to),
                   references=references)


# Runs of one mail that never finished (the process died, or its transaction failed) before it is
# quarantined: one poison mail must not hold up the queue forever. Not fewer: deaths that have
# nothing to do with the mail (a deploy, a host restart, kill -9) land on whatever is in flight,
# and right after a restart that is the same mail again; with 3, one CI run of the kill test
# quarantined two innocent mails (each killed once in its batch, then twice alone).
MAX_ATTEMPTS = 5


def process_pending(
    factory: sessionmaker[Session], intake: Intake, limit: int | None = None, *, batch: int | None = None
) -> list[IntakeResult]:
    """Process stored mail not yet processed (fresh, or left by a crash), a batch per transaction.

    Each run is counted on the row and committed before it starts, so a crash counts too. A mail
    with an unfinished earlier run goes alone, in its own transaction: a batch that died is retried
    mail by mail, and only the mail at fault reaches ``MAX_ATTEMPTS`` and is quarantined.
    How workers share the rows (claims, mails per transaction) is ``core.sharing``'s policy.
    """
    share = sharing(factory)
    batch = batch or share.process_batch
    results: list[IntakeResult] = []
    with worker_connection(factory) as factory:
        while limit is None or len(results) < limit:
            size = batch if limit is None else min(batch, limit - len(results))
            claim = _claim(factory, intake, size, share)
            if claim is None:
                break
            ids, gave_up = claim
            results.extend(gave_up)
            if ids:
                results.extend(_process_claimed(factory, intake, ids, share))
            release_claims(factory)
    return results


def _claim(
    factory: sessionmaker[Session], intake: Intake, size: int, share: Sharing
) -> tuple[list[int], list[IntakeResult]] | None:
    """Count a run on the next mails and commit that; quarantine those out of runs. None: nothing to do."""
    with transaction(factory) as session:
        if share.write_lock_first:
            locks.serialise(session)
        rows = session.scalars(
            select(Inbound)
            .where(Inbound.status == InboundStatus.NEW, or_(Inbound.retry_at.is_(None), Inbound.retry_at <= utcnow()))
            .order_by(Inbound.id)
            .limit(size + share.claims_held * 4)  # (and a few other workers claimed, not yet processing)
            .with_for_update(skip_locked=True)
        ).all()
        rows = hold_claims(session, rows, size)
        if not rows:
            return None
        if _unfinished(rows[0]):
            rows = rows[:1]  # a run of it did not finish: alone, so that it can only hold up itself
        else:
            rows = [row for row in rows if not _unfinished(row)]  # fresh mail: a batch
        ids: list[int] = []
        gave_up: list[IntakeResult] = []
        for row in rows:
            if _unfinished(row) >= MAX_ATTEMPTS:
                why = f"gave up after {_unfinished(row)} runs that did not finish (the process died or its transaction failed)"
                gave_up.append(intake._quarantine(session, row, why + (f"; {row.reason}" if row.reason else "")))
            else:
                row.attempts += 1
                ids.append(row.id)
    return ids, gave_up


def _record_transient(factory: sessionmaker[Session], intake: Intake, inbound_id: int, exc: BaseException) -> None:
    try:
        with transaction(factory) as session:
            inbound = session.get(Inbound, inbound_id)
            if inbound is not None and inbound.status is InboundStatus.NEW:
                intake.retry_later(session, inbound, exc)
    except (OperationalError, InterfaceError):
        pass  # still gone: the run stays counted as one that did not finish


def _unfinished(row: Inbound) -> int:
    """Runs begun that neither finished nor ended in a recorded transient failure (they died)."""
    return row.attempts - row.retries


def _process_claimed(
    factory: sessionmaker[Session], intake: Intake, ids: list[int], share: Sharing
) -> list[IntakeResult]:
    try:
        with transaction(factory) as session:
            if share.write_lock_first:
                locks.serialise(session)
            if share.audit_at_commit:  # the writers' lock for the commit only: workers overlap
                audit.chain_at_commit(session)
            rows = session.scalars(
                select(Inbound)
                .where(Inbound.id.in_(ids), Inbound.status == InboundStatus.NEW)
                .order_by(Inbound.id)
                # Held by our claim: waits out another worker's claim that is looking at it, not skips it.
                .with_for_update(skip_locked=not share.claims_held)
            ).all()
            results = [intake.process(session, inbound) for inbound in rows]
    except (OperationalError, InterfaceError) as exc:
        # The database itself (gone, locked, a deadlock): the caller retries later. A mail alone
        # has it recorded as a transient failure, if the database answers again already.
        if len(ids) == 1:
            _record_transient(factory, intake, ids[0], exc)
        raise
    except Exception as exc:
        # Escaped the per-mail quarantine (a failed flush or commit). A batch's mails go on alone;
        # a mail alone gets the failure noted, and quarantined once it is out of runs.
        log.exception("processing inbound %s failed outside its quarantine", ", ".join(map(str, ids)))
        if len(ids) == 1:
            with transaction(factory) as session:
                inbound = session.get(Inbound, ids[0])
                if inbound is not None and inbound.status is InboundStatus.NEW:
                    inbound.reason = f"run {inbound.attempts} failed: {_why(exc)}"
        return []
    return results


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def _why(exc: BaseException) -> str:
    """One line for a quarantine reason: a database error's text goes on with the SQL and the mail's values."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def _quarantined(session: Session, inbound_id: int) -> Inbound:
    inbound = session.get(Inbound, inbound_id)
    if inbound is None:
        raise i18n.Unknown(i18n.N_("no inbound mail %(id)s"), id=inbound_id)
    if inbound.status is not InboundStatus.QUARANTINED:
        raise i18n.Invalid(i18n.N_("inbound mail %(id)s is %(status)s, not quarantined"), id=inbound_id,
                           status=i18n.Word(inbound.status.value))
    return inbound


def requeue(session: Session, inbound_id: int, actor: str) -> Inbound:
    """Send a quarantined mail through intake again (after a fix): audited with who, and from what."""
    inbound = _quarantined(session, inbound_id)
    before = {"status": inbound.status.value, "reason": inbound.reason}
    inbound.status = InboundStatus.NEW
    inbound.reason = None
    inbound.attempts = inbound.retries = 0  # after a fix it gets its full runs again
    inbound.retry_at = None
    audit.record(
        session, actor=actor, action="inbound.requeue", object_type="inbound", object_id=inbound.id,
        before=before, after={"status": inbound.status.value},
    )
    return inbound


def discard(session: Session, inbound_id: int, actor: str, reason: str) -> Inbound:
    """Set a quarantined mail aside for good (spam, junk): audited with who and why; the raw bytes stay."""
    why = " ".join(reason.split())
    if not why:
        raise i18n.Invalid(i18n.N_("discarding a mail needs a reason"))
    inbound = _quarantined(session, inbound_id)
    before = {"status": inbound.status.value, "reason": inbound.reason}
    inbound.status = InboundStatus.DISCARDED
    inbound.reason = f"discarded by {actor}: {why}"[:4000]
    audit.record(
        session, actor=actor, action="inbound.discard", object_type="inbound", object_id=inbound.id,
        before=before, after={"status": inbound.status.value}, reason=why,
    )
    session.flush()
    return inbound
