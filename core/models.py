"""SQLAlchemy 2.0 typed models: the one schema shared by gateway, web and CLI.

Schema changes go through Alembic (core/migrations); see README "Changing the schema".
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from helpdesk.core.mail import Protection


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(at: datetime) -> datetime:
    """SQLite gives datetimes back naive; they are UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# Ids are INTEGER columns: 32 bits on PostgreSQL (SQLite's driver overflows only past 2**63). No row
# has a larger id, so a larger number from outside (a subject tag, a URL, the CLI) names nothing.
MAX_ID = 2**31 - 1


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[Any]: JSON}


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as plain strings (no native enum type): adding a member needs no migration.
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Role(enum.Enum):
    USER = "user"
    AGENT = "agent"
    APPROVER = "approver"
    ADMIN = "admin"


class TicketKind(enum.Enum):
    INCIDENT = "incident"
    SERVICE_REQUEST = "service_request"
    ACCESS_REQUEST = "access_request"


class TicketStatus(enum.Enum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"  # waiting on the user: SLA clock paused
    AWAITING_APPROVAL = "awaiting_approval"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Direction(enum.Enum):
    IN = "in"
    OUT = "out"


class InboundStatus(enum.Enum):
    NEW = "new"  # stored, not yet processed
    PROCESSED = "processed"  # in a ticket
    DUPLICATE = "duplicate"  # same Message-ID / bytes as an earlier record
    IGNORED = "ignored"  # recorded only (e.g. loop mail with no ticket)
    QUARANTINED = "quarantined"
    DISCARDED = "discarded"  # set aside by an admin, with a reason; the raw mail stays


class OutboxStatus(enum.Enum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # permanent failure or deadline passed


class Contact(Base):
    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role), default=Role.USER)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    api_token_hash: Mapped[str | None] = mapped_column(String(200))
    # None: the token may do what the role may; "events": only the Alertmanager webhook.
    api_token_scope: Mapped[str | None] = mapped_column(String(32))
    undeliverable: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The desk's mail to them is in this language (core.i18n); None: not known yet, the default.
    language: Mapped[str | None] = mapped_column(String(16))


class ConsoleSession(Base):
    """A console login: the cookie carries only a random id whose hash is kept here, so a session can be ended."""

    __tablename__ = "console_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class LoginAttempt(Base):
    """A console login attempt counted against the throttle: kept until it succeeds or leaves the window.

    In the database so that every console process counts the same attempts. Client and account are
    digests: people type passwords into the email field, and nothing typed needs keeping.
    """

    __tablename__ = "login_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (Index("ix_login_attempt_client_account", "client", "account"),)


class PortalLink(Base):
    """A sign-in link for the requester portal (core.portal): single use, short-lived, bound to its address.

    Every request for a link is a row, for unknown addresses too (no contact, no nonce, no mail), so
    that the rate limits count them all alike. Address and client are keyed digests, never the text.
    """

    __tablename__ = "portal_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    nonce_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_portal_link_address", "address", "created_at"),
        Index("ix_portal_link_client", "client", "created_at"),
    )


class PortalSession(Base):
    """A requester's portal sign-in: apart from console sessions, so it can never open a staff page."""

    __tablename__ = "portal_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    address: Mapped[str] = mapped_column(String(64))  # keyed digest: the session ends if the contact's address changes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Ticket(Base):
    __tablename__ = "ticket"

    id: Mapped[int] = mapped_column(primary_key=True)  # the ticket number users see as [#N]
    kind: Mapped[TicketKind] = mapped_column(_enum(TicketKind))
    category: Mapped[str] = mapped_column(String(80), default="general")
    catalogue_item: Mapped[str | None] = mapped_column(String(80))
    impact: Mapped[int] = mapped_column(Integer, default=3)  # 1 high .. 3 low
    urgency: Mapped[int] = mapped_column(Integer, default=3)
    priority: Mapped[str] = mapped_column(String(2), default="P4")
    status: Mapped[TicketStatus] = mapped_column(_enum(TicketStatus), default=TicketStatus.NEW)
    subject: Mapped[str] = mapped_column(Text, default="")
    requester_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    group: Mapped[str | None] = mapped_column(String(80))
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    # Merged as a duplicate: mail that finds this ticket goes to that one (core.merge).
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", name="fk_ticket_merged_into"))
    # Which rules fired and why: [{"rule": ..., "reason": ..., "sets": {...}}]
    classification: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    # SLA outcomes kept by core.slastate with every change that moves a clock, so reports count them in SQL:
    # the instant after which each clock is over its target (None: it is not, and stands still), and
    # the policy (targets, business hours) they were worked out under.
    response_breach_at: Mapped[datetime | None]
    resolution_breach_at: Mapped[datetime | None]
    sla_policy: Mapped[str | None] = mapped_column(String(16))

    requester: Mapped[Contact] = relationship(foreign_keys=[requester_id])
    assignee: Mapped[Contact | None] = relationship(foreign_keys=[assignee_id])
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", cascade="all, delete-orphan"
    )
    watchers: Mapped[list[Watcher]] = relationship(cascade="all, delete-orphan")
    # Custom field values (core.fields), read with the ticket: a page of tickets costs one more query, not one each.
    field_values: Mapped[list[FieldValue]] = relationship(viewonly=True, lazy="selectin")

    __table_args__ = (
        Index("ix_ticket_status_priority", "status", "priority"),
        # Covering indexes for the reports (core.reports): each figure reads a narrow index, not the tickets.
        Index("ix_ticket_report_counts", "kind", "category", "priority", "status"),
        Index("ix_ticket_status_created", "status", "created_at"),
        Index("ix_ticket_created", "created_at", "kind", "priority"),
        Index(
            "ix_ticket_sla", "sla_policy", "response_breach_at", "resolution_breach_at", "first_response_at",
            "resolved_at", "created_at",
        ),
    )

    @property
    def number(self) -> int:
        return self.id


class Watcher(Base):
    """A CC'd address that receives public replies on a ticket."""

    __tablename__ = "watcher"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    contact: Mapped[Contact] = relationship(lazy="joined")  # a ticket's watchers are read with their addresses

    __table_args__ = (UniqueConstraint("ticket_id", "contact_id"),)


class Message(Base):
    __tablename__ = "message"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    direction: Mapped[Direction] = mapped_column(_enum(Direction))
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str | None] = mapped_column(String(200))
    to: Mapped[list[Any]] = mapped_column(default=list)
    cc: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    reply_text: Mapped[str | None] = mapped_column(Text)  # text without quotes and signature
    html: Mapped[str | None] = mapped_column(Text)  # sanitised (core.safehtml), shown as it is
    # The sanitising policy html was cleaned under; None (stored before): cleaned once when first shown.
    html_policy: Mapped[int | None] = mapped_column(Integer)
    html_note: Mapped[str | None] = mapped_column(Text)  # why an HTML part is not shown: over the budget
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[Any]] = mapped_column(default=list)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A mail from a staff address: did it prove its sender (reply token, DKIM/SPF for trusted domains)?
    # None for everyone else's mail, which claims no staff rights.
    authenticated: Mapped[bool | None] = mapped_column(Boolean)
    # Signed (shown, signature kept as an attachment, not verified) or encrypted (kept, not readable).
    protection: Mapped[Protection | None] = mapped_column(_enum(Protection))
    # Calendar invitations in the mail: core.mail.CalendarEvent fields per event (None: none, or stored before).
    calendar: Mapped[list[Any] | None] = mapped_column(JSON)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(cascade="all, delete-orphan")


class Attachment(Base):
    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500), default="")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))  # None: dropped, over the size limit
    content_id: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(Text)


class RawMail(Base):
    """Raw bytes of every mail that arrived, keyed by content hash.

    Kept in the database so that storing them commits atomically with the IMAP cursor move.
    """

    __tablename__ = "raw_mail"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Inbound(Base):
    """One arrival of a mail: from an IMAP mailbox (mailbox, uidvalidity, uid) or a pipe."""

    __tablename__ = "inbound"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(200))  # mailbox name, or "ingest"
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)  # unsigned 32-bit in IMAP
    uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("raw_mail.sha256"), index=True)
    status: Mapped[InboundStatus] = mapped_column(_enum(InboundStatus), default=InboundStatus.NEW)
    reason: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    # Processing runs begun (committed before each run): a mail whose runs keep dying is quarantined.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Runs that ended in a transient failure (database, full or read-only disk), and when to try again.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[datetime | None]
    # Sender, date, subject and body hashed (core.identity): a reused Message-ID is no proof of a copy.
    fingerprint: Mapped[str | None] = mapped_column(String(64))

    raw: Mapped[RawMail] = relationship()

    __table_args__ = (
        UniqueConstraint("source", "uidvalidity", "uid", name="uq_inbound_imap_uid"),
        Index("ix_inbound_status", "status"),
    )


class MailboxCursor(Base):
    """How far a mailbox has been read, and who holds it (lease for several workers)."""

    __tablename__ = "mailbox_cursor"

    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)  # unsigned 32-bit in IMAP
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    # Microsoft Graph: where the next delta round of the folder starts (a nextLink or deltaLink); None: from scratch.
    delta_link: Mapped[str | None] = mapped_column(Text)
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]


class Outbox(Base):
    """A rendered mail waiting to be sent. The raw bytes are final: a retry resends them as they are."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    purpose: Mapped[str] = mapped_column(String(40))  # acknowledgement, reply, notification, ...
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # Automatic mail (Auto-Submitted other than "no") to one recipient: what the rate limit counts.
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    rcpt: Mapped[str | None] = mapped_column(String(320))

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_rcpt_created", "rcpt", "created_at"),
    )


class AuditEntry(Base):
    """Append-only audit trail; each entry is chained to the previous one by hash."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))  # email, or "system"
    action: Mapped[str] = mapped_column(String(80))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    # A ticket's history and its SLA timeline are read by object on every ticket page and report.
    __table_args__ = (Index("ix_audit_object", "object_type", "object_id"),)


class AuditHead(Base):
    """The audit chain's end, one row: what verify compares the chain with, so cutting entries off the end shows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    count: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))  # the newest entry's
    mac: Mapped[str] = mapped_column(String(64))  # HMAC over count and hash: the row cannot be rewritten without the key


# --- Service Operation processes: events, access, SLA marks, fulfilment -----------------


class Severity(enum.Enum):
    INFORMATIONAL = "informational"  # recorded only
    WARNING = "warning"
    EXCEPTION = "exception"


class Event(Base):
    """One alert from a monitoring tool (by mail or webhook)."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(40))  # nagios, icinga, zabbix, alertmanager, monit, cron
    host: Mapped[str] = mapped_column(String(255), default="")
    service: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(40))  # as the tool says it: CRITICAL, OK, firing, ...
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    recovery: Mapped[bool] = mapped_column(Boolean, default=False)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))


class AccessStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class AccessRequest(Base):
    """Who asked for which resource on whose behalf, and the approver's decision."""

    __tablename__ = "access_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    resource: Mapped[str] = mapped_column(String(200))
    resource_group: Mapped[str | None] = mapped_column(String(80))
    requester_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))  # who asked
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))  # who needs the access
    status: Mapped[AccessStatus] = mapped_column(_enum(AccessStatus), default=AccessStatus.PENDING)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship()
    requester: Mapped[Contact] = relationship(foreign_keys=[requester_id])
    beneficiary: Mapped[Contact] = relationship(foreign_keys=[beneficiary_id])
    decided_by: Mapped[Contact | None] = relationship(foreign_keys=[decided_by_id])


class AccessGrant(Base):
    """Access that was approved: who has what until when, unless revoked."""

    __tablename__ = "access_grant"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_request.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    resource: Mapped[str] = mapped_column(String(200))
    granted_by_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(320))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    fulfilment_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))

    request: Mapped[AccessRequest] = relationship()
    contact: Mapped[Contact] = relationship(foreign_keys=[contact_id])


class SlaMetric(enum.Enum):
    RESPONSE = "response"
    RESOLUTION = "resolution"


class SlaLevel(enum.Enum):
    WARNING = "warning"  # 80% of the target used
    BREACH = "breach"


class SlaMark(Base):
    """A threshold a ticket's SLA clock has crossed; unique so each is acted on once."""

    __tablename__ = "sla_mark"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    metric: Mapped[SlaMetric] = mapped_column(_enum(SlaMetric))
    level: Mapped[SlaLevel] = mapped_column(_enum(SlaLevel))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    elapsed_seconds: Mapped[int] = mapped_column(Integer)
    target_seconds: Mapped[int] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("ticket_id", "metric", "level", name="uq_sla_mark"),)


class Fulfilment(Base):
    """A service request's catalogue item, approval and checklist."""

    __tablename__ = "fulfilment"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    item: Mapped[str] = mapped_column(String(80))
    approval_needed: Mapped[bool] = mapped_column(Boolean, default=False)
    approved: Mapped[bool | None] = mapped_column(Boolean)  # None: not decided (or not needed)
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_at: Mapped[datetime | None]
    # [{"step": "...", "done_by": email | None, "done_at": iso | None}]
    checklist: Mapped[list[Any]] = mapped_column(default=list)


class MailLogin(Base):
    """How a mailbox's (or SMTP's) login fared: what `helpdesk mailboxes` and the console banner show."""

    __tablename__ = "mail_login"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # the mailbox name, or "smtp"
    auth_kind: Mapped[str] = mapped_column(String(32))  # password | oauth2
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    token_expires_at: Mapped[datetime | None]
    # Delegated OAuth2: the refresh token, encrypted with a key derived from the secret key.
    refresh_token: Mapped[str | None] = mapped_column(Text)
    alerted_at: Mapped[datetime | None]  # the last failure mail to admins (at most one a day)


class TicketMerge(Base):
    """A duplicate merged into another ticket, with what moved, so that the merge can be undone."""

    __tablename__ = "ticket_merge"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # {"messages": [ids], "watchers": [ids moved], "added_watchers": [ids], "events": [ids], "status": "open"}
    moved: Mapped[dict[str, Any]] = mapped_column(default=dict)
    undone_at: Mapped[datetime | None]
    undone_by: Mapped[str | None] = mapped_column(String(320))


class Macro(Base):
    """A canned reply kept by admins: a sandboxed template, and optionally fields it sets (core.macros)."""

    __tablename__ = "macro"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)  # what agents write after #macro
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[TicketStatus | None] = mapped_column(_enum(TicketStatus))
    priority: Mapped[str | None] = mapped_column(String(2))
    category: Mapped[str | None] = mapped_column(String(80))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    assignee: Mapped[Contact | None] = relationship()


class WebhookFormat(enum.Enum):
    JSON = "json"  # our own payload, for programs
    SLACK = "slack"  # {"text": ...}: a Slack (or Mattermost, Rocket.Chat) incoming webhook
    TEAMS = "teams"  # a MessageCard: a Microsoft Teams incoming webhook


class Webhook(Base):
    """An admin's outgoing webhook: ticket events POSTed, signed, to a URL (core.webhooks)."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(default=list)  # core.webhooks.EVENTS it is sent
    secret: Mapped[str] = mapped_column(Text)  # the signing secret, sealed with a key derived from the secret key
    format: Mapped[WebhookFormat] = mapped_column(_enum(WebhookFormat), default=WebhookFormat.JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook, queued in the event's transaction and drained as the outbox is.

    The body is final (a retry sends the same bytes under the same delivery id); the signature is
    made at each attempt, over that attempt's timestamp. No personal data: see core.webhooks.
    """

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)  # X-Helpdesk-Delivery: receivers de-duplicate
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: a deleted ticket keeps its history here
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    deadline_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)  # the status line and a short excerpt of the answer
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    webhook: Mapped[Webhook] = relationship()

    __table_args__ = (Index("ix_webhook_delivery_due", "status", "next_attempt_at"),)


# --- satisfaction (CSAT) and agent collision -------------------------------------------


class Rating(enum.Enum):
    GOOD = "good"
    BAD = "bad"


class Satisfaction(Base):
    """The requester's one answer about a resolved ticket (core.csat): a later click changes it.

    A row with ``excluded`` set and no rating says the ticket is never surveyed (opened by an automatic sender).
    """

    __tablename__ = "satisfaction"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    rating: Mapped[Rating | None] = mapped_column(_enum(Rating))
    comment: Mapped[str | None] = mapped_column(Text)
    # Who and what is rated, as the ticket stood when the answer came: later changes do not move it.
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    category: Mapped[str | None] = mapped_column(String(80))
    excluded: Mapped[str | None] = mapped_column(String(80))
    rated_at: Mapped[datetime | None] = mapped_column(index=True)


class PresenceState(enum.Enum):
    VIEWING = "viewing"
    TYPING = "typing"


class Presence(Base):
    """Who has a ticket's page open, and whether they are typing a reply (core.presence), as of their last poll."""

    __tablename__ = "presence"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    state: Mapped[PresenceState] = mapped_column(_enum(PresenceState), default=PresenceState.VIEWING)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    contact: Mapped[Contact] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("ticket_id", "contact_id", name="uq_presence_ticket_contact"),)


# --- custom fields and groups (core.fields, core.groups) ---------------------------------


class FieldType(enum.Enum):
    TEXT = "text"
    CHOICE = "choice"  # one of the definition's choices
    DATE = "date"  # an ISO date, YYYY-MM-DD
    USER = "user"  # an agent's address


class FieldDef(Base):
    """An admin-defined ticket field: shown and edited on tickets of the kind it applies to."""

    __tablename__ = "field_def"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)  # what #set, the API and queue filters name it by
    label: Mapped[str] = mapped_column(String(80))
    applies_to: Mapped[str] = mapped_column(String(16), default="all")  # all | incident | request | access | event
    type: Mapped[FieldType] = mapped_column(_enum(FieldType))
    choices: Mapped[list[Any]] = mapped_column(default=list)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FieldValue(Base):
    """One field's value on one ticket, as text (a date as YYYY-MM-DD, a user as the address)."""

    __tablename__ = "field_value"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    field_id: Mapped[int] = mapped_column(ForeignKey("field_def.id"))
    value: Mapped[str] = mapped_column(String(500))

    field: Mapped[FieldDef] = relationship(lazy="joined")

    # One value per field and ticket; the queue filters by (field, value).
    __table_args__ = (
        UniqueConstraint("ticket_id", "field_id", name="uq_field_value_ticket_field"),
        Index("ix_field_value_field_value", "field_id", "value"),
    )


class GroupMember(Base):
    __tablename__ = "group_member"

    group_id: Mapped[int] = mapped_column(ForeignKey("desk_group.id"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), primary_key=True)


class Group(Base):
    """A team of agents; a ticket's ``group`` names one. Rules route by that name."""

    __tablename__ = "desk_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))  # an optional alias the team reads
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[Contact]] = relationship(secondary="group_member", order_by="Contact.email")
