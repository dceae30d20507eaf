"""Loop guard: is this mail an auto-reply, a bounce, a complaint, list mail or our own?

Each signal is a small named `Rule` whose `check()` returns the reason it matched (or None),
so the verdicts can say *why* a mail was never answered (the Mailman way). Only the
top-level headers of a mail count: a bounce that carries the original mail's `List-Id`
is not list mail.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from helpdesk.core.mail import ParsedMail

__all__ = [
    "Flag",
    "Rule",
    "RULES",
    "Verdicts",
    "bounced_message_ids",
    "failed_recipients",
    "judge",
    "may_auto_answer",
]


class Flag(enum.Enum):
    AUTO_REPLY = "auto_reply"  # a response sent by a program (vacation, autoresponder)
    BOUNCE = "bounce"  # a delivery failure report
    DELIVERY_DELAY = "delivery_delay"  # "still being retried": late, not failed
    CHALLENGE = "challenge"  # a challenge-response filter asks the sender to prove to be a person
    FEEDBACK_REPORT = "feedback_report"  # ARF / feedback-loop complaint
    MAILING_LIST = "mailing_list"
    OWN_MAIL = "own_mail"  # sent by us, came back
    AUTO_GENERATED = "auto_generated"  # machine mail that is no reply (alerts, newsletters)
    DELIVERY_NOTICE = "delivery_notice"  # success DSN, read receipt: nothing to do


@dataclass(frozen=True)
class Verdicts:
    auto_reply: bool = False
    bounce: bool = False
    feedback_report: bool = False
    mailing_list: bool = False
    own_mail: bool = False
    reasons: tuple[str, ...] = ()
    auto_generated: bool = False
    delivery_notice: bool = False
    delay: bool = False
    challenge: bool = False

    def as_json(self) -> dict[str, bool]:
        """The keys of the `helpdesk parse --json` contract (added to, never renamed)."""
        return {
            "auto_reply": self.auto_reply,
            "bounce": self.bounce,
            "feedback_report": self.feedback_report,
            "mailing_list": self.mailing_list,
            "delay": self.delay,
            "challenge": self.challenge,
        }

    @property
    def automatic(self) -> bool:
        """Any reason at all not to answer this mail automatically."""
        return any(
            (
                self.auto_reply,
                self.bounce,
                self.feedback_report,
                self.mailing_list,
                self.own_mail,
                self.auto_generated,
                self.delivery_notice,
                self.delay,
                self.challenge,
            )
        )


@dataclass(frozen=True)
class Context:
    own_addresses: frozenset[str]
    is_own_message_id: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    flag: Flag
    test: Callable[[ParsedMail, Context], str | None]

    def check(self, mail: ParsedMail, context: Context) -> str | None:
        """The reason this rule matches `mail`, or None."""
        return self.test(mail, context)


# --- small helpers -------------------------------------------------------------------


def _first(mail: ParsedMail, name: str) -> str:
    return (mail.header(name) or "").strip()


def _fold(text: str) -> str:
    """Lower-case without diacritics, so 'Automātiskā' matches 'automatiska'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _angle_free(value: str) -> str:
    return value.strip().strip("<>").strip()


_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.ASCII)
_DAEMON_LOCAL_PARTS = frozenset(
    {"mailer-daemon", "mailerdaemon", "mail-daemon", "maildaemon", "postmaster", "post_master"}
)
_DAEMON_NAMES = re.compile(r"\b(mailer-daemon|mail delivery (sub)?system)\b", re.IGNORECASE)


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def _canonical(address: str) -> str:
    """`help+1234-tok@Example.org` -> `help@example.org`: sub-addresses are still ours."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}" if local else address.strip().lower()


def _daemon_sender(mail: ParsedMail) -> str | None:
    raw = _first(mail, "from")
    if mail.sender and _local_part(mail.sender) in _DAEMON_LOCAL_PARTS:
        return mail.sender
    if _DAEMON_NAMES.search(raw):
        return raw
    return None


def _null_return_path(mail: ParsedMail) -> bool:
    values = mail.headers.get("return-path", [])
    return any(_angle_free(v).lower() in ("", "mailer-daemon", "null") for v in values)


def _mail_system_sent(mail: ParsedMail) -> str | None:
    """Why the envelope or sender says a mail system (not a person, not an app) sent this."""
    if _null_return_path(mail):
        return "empty Return-Path"
    if (daemon := _daemon_sender(mail)) is not None:
        return f"sender {daemon}"
    if mail.headers.get("x-failed-recipients"):
        return "X-Failed-Recipients"
    if _auto_submitted_keyword(mail) == "auto-replied":
        return "Auto-Submitted: auto-replied"
    return None


def _program_sent(mail: ParsedMail) -> str | None:
    """Sent by some program: an alerting tool, a shop, a mail system."""
    auto = _auto_submitted_keyword(mail)
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    return _noreply_sender(mail)


_NOREPLY = re.compile(r"^(no-?reply|do-?not-?reply|donotreply)([+._-].*)?$")


def _noreply_sender(mail: ParsedMail) -> str | None:
    return f"sender {mail.sender}" if _NOREPLY.match(_local_part(mail.sender)) else None


# --- header rules: RFC 3834 and friends ----------------------------------------------


def _auto_submitted_keyword(mail: ParsedMail) -> str:
    """`auto-replied` from `Auto-Replied (vacation); owner-email=...`."""
    return re.split(r"[;(]", _first(mail, "auto-submitted"), maxsplit=1)[0].strip().lower()


def _auto_replied(mail: ParsedMail, _: Context) -> str | None:
    keyword = _auto_submitted_keyword(mail)
    return f"Auto-Submitted: {keyword}" if keyword == "auto-replied" else None


def _auto_generated(mail: ParsedMail, _: Context) -> str | None:
    keyword = _auto_submitted_keyword(mail)
    return f"Auto-Submitted: {keyword}" if keyword not in ("", "no", "auto-replied") else None


# Header -> value pattern; None: the header's presence is enough.
_AUTOREPLY_HEADERS: tuple[tuple[str, re.Pattern[str] | None], ...] = (
    ("x-autoreply", None),
    ("x-autorespond", None),
    ("x-autoresponder", None),
    ("x-vacation", None),
    ("x-autogenerated", re.compile(r"reply", re.IGNORECASE)),
    ("x-apple-action", re.compile(r"vacation", re.IGNORECASE)),
    ("precedence", re.compile(r"^\s*auto[_-]?reply", re.IGNORECASE)),
    ("x-mailer", re.compile(r"\bvacation\b", re.IGNORECASE)),
)


def _autoreply_header(mail: ParsedMail, _: Context) -> str | None:
    for name, pattern in _AUTOREPLY_HEADERS:
        for value in mail.headers.get(name, []):
            if pattern is None or pattern.search(value):
                return f"{name.title()}: {value.strip()}"
    return None


# Vacation subjects in the languages our users and their mail servers speak; compared
# after _fold(), so without diacritics.
_VACATION_PHRASES = (
    r"out of (the )?office",
    r"auto(matic)?[ -]?repl(y|ied)",
    r"auto[ -]?respon(se|der|s)\w*",
    r"automatic response",
    r"vacation (reply|message|notice)",
    r"on vacation",
    r"abwesenheitsnotiz",
    r"automatische antwort",
    r"abwesend",
    r"reponse automatique",
    r"absence du bureau",
    r"absent\w* du bureau",
    r"respuesta automatica",
    r"fuera de (la )?oficina",
    r"risposta automatica",
    r"fuori sede",
    r"automatisch antwoord",
    r"afwezig",
    r"resposta automatica",
    r"autosvar",
    r"automaattinen vastaus",
    r"automatyczna odpowiedz",
    r"automaticka odpoved",
    r"automatiska atbilde",
    r"automatinis atsakymas",
    r"автоматическ\w* ответ",
    r"自動応答",
    r"自動返信",
    r"不在",
)
_VACATION_ALTERNATIVES = "|".join(_fold(phrase) for phrase in _VACATION_PHRASES)
_VACATION_PREFIX = re.compile(f"({_VACATION_ALTERNATIVES})")
_VACATION_WHOLE = re.compile(rf"\s*({_VACATION_ALTERNATIVES})[\s.!]*")
_FORWARD_OR_REPLY = re.compile(r"^\s*(re|aw|sv|fwd?|wg|tr|rv|fw)\s*:", re.IGNORECASE)


def _vacation_subject(mail: ParsedMail, _: Context) -> str | None:
    """'Automatic reply: ...' style prefixes, or a subject that is only such a phrase.

    A person's subject like 'Out of office next week, please reassign' must not match,
    hence: the phrase sits before the first colon, or it is the whole subject.
    """
    subject = _fold(mail.subject.strip())
    if not subject or _FORWARD_OR_REPLY.match(subject):
        return None
    prefix, colon, _rest = subject.partition(":")
    if (colon and _VACATION_PREFIX.search(prefix)) or _VACATION_WHOLE.fullmatch(subject):
        return f"vacation subject {mail.subject.strip()!r}"
    return None


def _suppress_header(mail: ParsedMail, _: Context) -> str | None:
    value = _first(mail, "x-auto-response-suppress")
    if value and value.lower() != "none":
        return f"X-Auto-Response-Suppress: {value}"
    return None


def _precedence(kinds: tuple[str, ...]) -> Callable[[ParsedMail, Context], str | None]:
    def test(mail: ParsedMail, _: Context) -> str | None:
        value = _first(mail, "precedence").lower()
        return f"Precedence: {value}" if value in kinds else None

    return test


_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "mailing-list", "x-mailing-list")


def _list_headers(mail: ParsedMail, _: Context) -> str | None:
    for name in _LIST_HEADERS:
        if name in mail.headers:
            return f"{name.title()}: {mail.headers[name][0].strip()[:80]}"
    return None


def _empty_return_path(mail: ParsedMail, _: Context) -> str | None:
    return "empty Return-Path <>" if _null_return_path(mail) else None


def _daemon_from(mail: ParsedMail, _: Context) -> str | None:
    daemon = _daemon_sender(mail)
    return f"sender is a mail system ({daemon})" if daemon else None


def _noreply_from(mail: ParsedMail, _: Context) -> str | None:
    return _noreply_sender(mail)


def _own_address(mail: ParsedMail, context: Context) -> str | None:
    if not context.own_addresses:
        return None
    if mail.sender and _canonical(mail.sender) in context.own_addresses:
        return f"sent from our own address {mail.sender}"
    # The envelope only when it is our address itself: forwarding services put their own sub-address of
    # ours there (Gmail's help+caf_=...@domain) on every user's mail they pass on.
    envelope = [_angle_free(v) for v in [*mail.headers.get("return-path", []), *mail.headers.get("sender", [])]]
    for candidate in envelope:
        if candidate and candidate.strip().lower() in context.own_addresses:
            return f"sent from our own address {candidate}"
    return None


def _own_message_id(mail: ParsedMail, context: Context) -> str | None:
    mid = mail.message_id
    if not mid or context.is_own_message_id is None:
        return None
    return f"our own Message-ID <{mid}>" if context.is_own_message_id(mid) else None


# --- reports: DSN (RFC 3464), ARF (RFC 5965), MDN (RFC 8098) -------------------------


@dataclass(frozen=True)
class _DsnRecipient:
    recipient: str
    action: str
    status: str


def _dsn_fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    name = ""
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and name:
            fields[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if colon and key.strip() and " " not in key.strip():
            name = key.strip().lower()
            fields.setdefault(name, value.strip())
    return fields


def _dsn_recipients(delivery_status: str) -> list[_DsnRecipient]:
    """Per-recipient blocks of a message/delivery-status body (blank-line separated)."""
    text = delivery_status.replace("\r\n", "\n").replace("\r", "\n")
    recipients = []
    for block in re.split(r"\n\s*\n", text):
        fields = _dsn_fields(block)
        address = fields.get("final-recipient") or fields.get("original-recipient") or ""
        if not address and "action" not in fields:
            continue
        address = address.partition(";")[2].strip() if ";" in address else address.strip()
        recipients.append(
            _DsnRecipient(
                recipient=_angle_free(address).lower(),
                action=fields.get("action", "").split()[0].lower() if fields.get("action") else "",
                status=fields.get("status", "").split()[0] if fields.get("status") else "",
            )
        )
    return recipients


# "deliverable" answers an address verification (sendmail -bv), nothing failed.
_NO_PROBLEM_ACTIONS = frozenset({"delivered", "relayed", "expanded", "deliverable"})


def _is_dsn(mail: ParsedMail) -> bool:
    return mail.delivery_status is not None or (mail.report_type or "").lower() == "delivery-status"


# DSN fields written into the text of a mail without a multipart/report (some Postfix and gateway set-ups).
_FLAT_DSN = re.compile(r"^(?:reporting-mta|final-recipient)[ \t]*:", re.IGNORECASE | re.MULTILINE)


def _report_head(mail: ParsedMail) -> str:
    """A report's own words, before the returned mail begins."""
    return _ORIGINAL_MARKERS.split(mail.text[:20000], maxsplit=1)[0]


def _delivery_status(mail: ParsedMail, head: str | None = None) -> str:
    """The message/delivery-status part, or DSN fields found in the text of a report without one."""
    if mail.delivery_status is not None:
        return mail.delivery_status
    head = _report_head(mail) if head is None else head
    found = _FLAT_DSN.search(head)
    return head[found.start():] if found else ""


def _dsn_actions(mail: ParsedMail, head: str | None = None) -> set[str]:
    return {r.action for r in _dsn_recipients(_delivery_status(mail, head)) if r.action}


def _only_delayed(actions: set[str]) -> bool:
    """Some recipient is still being retried and none failed: a warning, not a failure."""
    return "delayed" in actions and actions <= _NO_PROBLEM_ACTIONS | {"delayed"}


def _dsn_problem(mail: ParsedMail, _: Context) -> str | None:
    if not _is_dsn(mail):
        return None
    actions = _dsn_actions(mail)
    if actions and (actions <= _NO_PROBLEM_ACTIONS or _only_delayed(actions)):
        return None
    detail = f", action={'/'.join(sorted(actions))}" if actions else ""
    return f"DSN report-type=delivery-status{detail}"


def _dsn_delay(mail: ParsedMail, _: Context) -> str | None:
    if _is_dsn(mail) and _only_delayed(actions := _dsn_actions(mail)):
        return f"DSN action={'/'.join(sorted(actions))}"
    return None


def _dsn_success(mail: ParsedMail, _: Context) -> str | None:
    actions = _dsn_actions(mail) if _is_dsn(mail) else set()
    if actions and actions <= _NO_PROBLEM_ACTIONS:
        return f"DSN action={'/'.join(sorted(actions))}"
    return None


def _mdn(mail: ParsedMail, _: Context) -> str | None:
    if (mail.report_type or "").lower() == "disposition-notification":
        return "MDN report-type=disposition-notification"
    return None


def _arf(mail: ParsedMail, _: Context) -> str | None:
    if mail.feedback_report is not None or (mail.report_type or "").lower() == "feedback-report":
        kind = _dsn_fields(mail.feedback_report or "").get("feedback-type", "")
        return f"ARF report-type=feedback-report{', type=' + kind if kind else ''}"
    return None


# Hotmail's and AOL's feedback loops predate ARF; their subject is a fixed text.
_LEGACY_FBL_SUBJECT = re.compile(
    r"^\s*(complaint about message from \d|email feedback report for ip \d)", re.IGNORECASE
)


def _legacy_feedback_loop(mail: ParsedMail, _: Context) -> str | None:
    if _LEGACY_FBL_SUBJECT.search(mail.subject) and mail.attached_headers:
        return f"feedback-loop subject {mail.subject.strip()!r}"
    return None


# Amazon SES forwards its events as JSON through SNS.
_SES_EVENT = re.compile(r'notificationType\\?"\s*:\s*\\?"(Bounce|Complaint|Delivery)')


def _ses_event(kind: str) -> Callable[[ParsedMail, Context], str | None]:
    def test(mail: ParsedMail, _: Context) -> str | None:
        match = _SES_EVENT.search(mail.text[:20000])
        if match and match.group(1) == kind and "amazonaws.com" in mail.sender:
            return f"Amazon SES notification {kind}"
        return None

    return test


# --- non-standard bounces: the texts MTAs write when they send no DSN ----------------


@dataclass(frozen=True)
class _Pattern:
    name: str
    pattern: re.Pattern[str]


def _p(name: str, regex: str) -> _Pattern:
    return _Pattern(name, re.compile(regex, re.IGNORECASE))


_BOUNCE_SUBJECTS = (
    _p("Postfix/Sendmail", r"undeliver(ed|able) mail returned to sender"),
    _p("Exim", r"mail delivery failed"),
    _p("Sendmail", r"returned mail\s*:"),
    _p("Exchange", r"^\s*(undeliverable|undelivered|non remis|non recapitabile|unzustellbar|"
       r"no se puede entregar|onbestelbaar|nao entregue|olevererbart|kan ikke leveres)\b"),
    _p("qmail", r"^\s*failure notice\s*$"),
    _p("Gmail/Exchange/OpenSMTPD", r"delivery status notification\s*(\((failure|delay)\)|: error)"),
    _p("Lotus Domino", r"^\s*delivery (failure|report)\b"),
    _p("generic", r"(delivery|mail)( has)? fail(ed|ure)|could not be delivered|not be delivered|"
       r"undeliverable|delivery (problem|error|notification)|failure notice|returned mail|"
       r"nondeliverable|non-delivery|rejected|warning: message .* delayed|delivery delayed|"
       r"mail system error|message you sent blocked"),
)

_BOUNCE_TEXTS = (
    _p("qmail", r"this is the qmail-send program"),
    _p("qmail", r"i'm afraid i wasn't able to deliver your message"),
    _p("Exim", r"this message was created automatically by mail delivery software"),
    _p("Exim", r"a message that you sent could not be delivered to one or more of"),
    _p("Exim", r"message .* delayed|has not yet been delivered to one or more"),
    _p("Postfix", r"this is the mail system at host"),
    _p("Postfix", r"i'm sorry to have to inform you that your message could not"),
    _p("Sendmail", r"the original message was received at"),
    _p("Sendmail", r"-{3,} ?the following address(es)? had (permanent fatal|transient non-fatal) errors"),
    _p("Sendmail", r"-{3,} ?transcript of session follows"),
    _p("OpenSMTPD", r"an error has occurred while attempting to deliver a message"),
    _p("Exchange", r"did not reach the following recipient"),
    _p("Exchange", r"delivery has failed to these recipients or (groups|distribution lists)"),
    _p("Exchange", r"your message did not reach some or all of the intended recipients"),
    _p("Exchange", r"the following recipient\(s\) (could not be reached|cannot be reached)"),
    _p("Exchange", r"your message (wasn't|was not|couldn't be|could not be) delivered"),
    _p("Lotus Notes", r"your message\s+subject:.*\s+was not delivered to"),
    _p("Lotus Domino", r"not listed in (public|domino) directory"),
    _p("Yahoo", r"sorry, we were unable to deliver your message to the following address"),
    _p("Yahoo", r"message from yahoo(!)? mail"),
    _p("Gmail", r"delivery to the following recipients? (failed|has been delayed)"),
    _p("Gmail", r"the email account that you tried to reach does not exist"),
    _p("Gmail", r"(address not found|message (not|wasn't) delivered)\s.*"
       r"(wasn't delivered|couldn't be found|unable to receive)"),
    _p("Gmail", r"your message wasn't delivered to .* because"),
    _p("Courier", r"your message to the following recipients cannot be delivered"),
    _p("Microsoft", r"delivery to the following recipients? failed"),
    _p("generic", r"(could not|couldn't|was not|cannot|can't|unable to) (be )?deliver(ed)?"),
    _p("generic", r"(permanent|fatal) (error|failure)"),
    _p("generic", r"no such (user|recipient|mailbox)|invalid (user|recipient|mailbox)( address)?"),
    _p("generic", r"(undeliverable|undelivered|non-?delivery) (message|report|notification|mail)"),
    _p("generic", r"(user|recipient|mailbox|address) (unknown|not found|is full|unavailable|does not exist)"),
    _p("generic", r"\b5\d\d[ -]5\.\d{1,3}\.\d{1,3}\b|\b5\.\d\.\d{1,3}\b"),
    _p("generic", r"delivery (status notification|failure|failed|has failed)"),
    _p("generic", r"returned (mail|message)|message (returned|bounced)"),
)


def _match(patterns: Iterable[_Pattern], text: str) -> _Pattern | None:
    return next((p for p in patterns if p.pattern.search(text)), None)


def _nonstandard_bounce(mail: ParsedMail, context: Context) -> str | None:
    """A bounce without a DSN part: the mail system's own words, sent by a mail system.

    A person forwarding a bounce to the helpdesk ("my mail bounced, help") is not one, so
    the words only count when the envelope or sender says a program sent them. A program
    that is no mail system (a monitoring alert about a mail queue, say) needs an MTA's
    exact wording, not just generic words like "could not be delivered".
    """
    found = _bounce_words(mail)
    # A delay warning or a challenge may use a bounce's words; they are what they are (checked last: rarer).
    if found is None or _delay_notice(mail) is not None or _challenge(mail, context) is not None:
        return None
    return found


def _bounce_words(mail: ParsedMail) -> str | None:
    if _is_dsn(mail):
        return None
    subject = _match(_BOUNCE_SUBJECTS, mail.subject)
    body = _match(_BOUNCE_TEXTS, mail.text[:8000])
    if (mail_system := _mail_system_sent(mail)) is not None:
        found = subject or body
        return f"{found.name} bounce text, {mail_system}" if found else None
    if (program := _program_sent(mail)) is not None:
        specific = next((p for p in (subject, body) if p is not None and p.name != "generic"), None)
        return f"{specific.name} bounce text, {program}" if specific else None
    return None


def _delay_notice(mail: ParsedMail) -> str | None:
    """A mail system's text-only warning that delivery is late ("still being retried"), not failed.

    DSN fields in the text decide when there are any (a failed recipient beside a delayed one makes a
    bounce); else the subject, or the report's own words when the subject names no failure.
    """
    if _is_dsn(mail) or (sent := _mail_system_sent(mail)) is None:
        return None
    head = _report_head(mail)
    if actions := _dsn_actions(mail, head):
        return f"DSN fields in the text, action={'/'.join(sorted(actions))}, {sent}" if _only_delayed(actions) else None
    if _DELAY_NOTICE.search(mail.subject) or (_DELAY_NOTICE.search(head) and not _FAILURE_SUBJECT.search(mail.subject)):
        return f"delay warning {mail.subject.strip()[:80]!r}, {sent}"
    return None


def _delay_text(mail: ParsedMail, _: Context) -> str | None:
    return _delay_notice(mail)


# --- challenge-response filters: "prove you are a person" ------------------------------

# Services that send such challenges: their domain in the sender, envelope or Message-ID is enough.
_CHALLENGE_DOMAINS = ("boxbe.com", "spamarrest.com", "mailblocks.com", "bluebottle.com", "sendio.com", "choicemail.com")
_CHALLENGE_DOMAIN = re.compile(r"[@.](" + "|".join(re.escape(d) for d in _CHALLENGE_DOMAINS) + r")\b", re.IGNORECASE)
# A challenge's own words; they count only in mail a program sent (a person may well say "verify").
_CHALLENGE_TEXTS = (
    _p("Boxbe", r"\b(guest list|waiting list)\b.{0,300}\b(guest list|waiting list|boxbe)\b"),
    _p("Spam Arrest", r"spam ?arrest"),
    _p("generic", r"challenge[- ]response|verify (that )?you are (a )?(real )?(person|human)|"
       r"sender (verification|not pre-?approved)|to complete (this|the) verification|"
       r"(message|mail) (is|has been) (held|quarantined) (until|pending) .{0,40}verif"),
)


def _challenge(mail: ParsedMail, _: Context) -> str | None:
    envelope = [mail.sender, *mail.headers.get("return-path", []), *mail.headers.get("sender", []), mail.message_id or ""]
    for value in envelope:
        if m := _CHALLENGE_DOMAIN.search(value):
            return f"challenge-response service {m.group(1).lower()}"
    sent = _program_sent(mail) or _mail_system_sent(mail)
    action_required = "action required" in mail.subject.lower()
    if sent is None and not action_required:
        return None  # a person's mail (most mail: no text search)
    found = _match(_CHALLENGE_TEXTS, f"{mail.subject}\n{mail.text[:5000]}")
    if found is not None and sent is not None:
        return f"{found.name} challenge text, {sent}"
    if found is not None and found.name != "generic":
        return f"{found.name} challenge text, subject {mail.subject.strip()[:80]!r}"
    return None


# --- the rule table -------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule("own-address", "sent from one of our own addresses", Flag.OWN_MAIL, _own_address),
    Rule("own-message-id", "carries a Message-ID we generated", Flag.OWN_MAIL, _own_message_id),
    Rule("dsn", "RFC 3464 delivery status report of a failure", Flag.BOUNCE, _dsn_problem),
    Rule("dsn-delay", "RFC 3464 report of delivery still being retried", Flag.DELIVERY_DELAY, _dsn_delay),
    Rule("delay-notice", "a mail system's warning that delivery is late, as text", Flag.DELIVERY_DELAY, _delay_text),
    Rule("challenge", "challenge-response filter (Boxbe, Spam Arrest, ...) asking to verify the sender",
         Flag.CHALLENGE, _challenge),
    Rule("dsn-success", "RFC 3464 report of successful delivery", Flag.DELIVERY_NOTICE, _dsn_success),
    Rule("mdn", "RFC 8098 read receipt", Flag.DELIVERY_NOTICE, _mdn),
    Rule("ses-bounce", "Amazon SES bounce event", Flag.BOUNCE, _ses_event("Bounce")),
    Rule("ses-delivery", "Amazon SES delivery event", Flag.DELIVERY_NOTICE, _ses_event("Delivery")),
    Rule(
        "nonstandard-bounce",
        "qmail/Exim/Postfix/Sendmail/Exchange/Lotus/Yahoo/Gmail failure texts from a mail system",
        Flag.BOUNCE,
        _nonstandard_bounce,
    ),
    Rule("arf", "RFC 5965 abuse feedback report", Flag.FEEDBACK_REPORT, _arf),
    Rule("ses-complaint", "Amazon SES complaint event", Flag.FEEDBACK_REPORT, _ses_event("Complaint")),
    Rule("legacy-fbl", "pre-ARF feedback loop (Hotmail, AOL)", Flag.FEEDBACK_REPORT, _legacy_feedback_loop),
    Rule(
        "auto-submitted-reply",
        "RFC 3834 Auto-Submitted: auto-replied",
        Flag.AUTO_REPLY,
        _auto_replied,
    ),
    Rule(
        "auto-submitted",
        "RFC 3834 Auto-Submitted other than no/auto-replied",
        Flag.AUTO_GENERATED,
        _auto_generated,
    ),
    Rule("autoreply-header", "X-Autoreply, X-Autorespond and vendor vacation headers", Flag.AUTO_REPLY,
         _autoreply_header),
    Rule("vacation-subject", "vacation / out-of-office subject", Flag.AUTO_REPLY, _vacation_subject),
    Rule("suppress-auto-response", "X-Auto-Response-Suppress asks for no automatic answer",
         Flag.AUTO_GENERATED, _suppress_header),
    Rule("precedence-list", "Precedence: list", Flag.MAILING_LIST, _precedence(("list",))),
    Rule("precedence-bulk", "Precedence: bulk or junk", Flag.AUTO_GENERATED, _precedence(("bulk", "junk"))),
    Rule("list-headers", "RFC 2369/2919 List-Id, List-Unsubscribe, ...", Flag.MAILING_LIST, _list_headers),
    Rule("empty-return-path", "null envelope sender <>", Flag.AUTO_GENERATED, _empty_return_path),
    Rule("daemon-sender", "MAILER-DAEMON or postmaster sender", Flag.AUTO_GENERATED, _daemon_from),
    Rule("noreply-sender", "a no-reply sender cannot read an answer", Flag.AUTO_GENERATED, _noreply_from),
)


def judge(
    mail: ParsedMail,
    *,
    own_addresses: Collection[str],
    is_own_message_id: Callable[[str], bool] | None = None,
) -> Verdicts:
    """Run every rule over `mail`.

    Our Message-IDs are recognised by `is_own_message_id` (a check of their signature: our
    users' mail clients may write Message-IDs in our domain); without it, none is ours.
    """
    context = Context(frozenset(_canonical(a) for a in own_addresses if a), is_own_message_id)
    flags: set[Flag] = set()
    reasons: list[str] = []
    for rule in RULES:
        reason = rule.check(mail, context)
        if reason is not None:
            flags.add(rule.flag)
            reasons.append(f"{rule.name}: {reason}")
    # A bounce or complaint often says "Auto-Submitted: auto-replied" too; it is reported
    # as what it is (the reasons still list every rule that fired).
    report = bool(flags & {Flag.BOUNCE, Flag.FEEDBACK_REPORT, Flag.DELIVERY_DELAY, Flag.CHALLENGE})
    return Verdicts(
        auto_reply=Flag.AUTO_REPLY in flags and not report,
        bounce=Flag.BOUNCE in flags,
        feedback_report=Flag.FEEDBACK_REPORT in flags,
        mailing_list=Flag.MAILING_LIST in flags,
        own_mail=Flag.OWN_MAIL in flags,
        reasons=tuple(reasons),
        auto_generated=Flag.AUTO_GENERATED in flags,
        delivery_notice=Flag.DELIVERY_NOTICE in flags,
        delay=Flag.DELIVERY_DELAY in flags and Flag.BOUNCE not in flags,
        challenge=Flag.CHALLENGE in flags and Flag.BOUNCE not in flags,
    )


def may_auto_answer(mail: ParsedMail, verdicts: Verdicts) -> bool:
    """Mailman's can_acknowledge(): only a person with a usable address gets an automatic answer."""
    return not verdicts.automatic and "@" in mail.sender


# --- what a bounce tells us -----------------------------------------------------------

_MESSAGE_ID_LINE = re.compile(
    r"^[ \t>]*(?:x-)?(?:original-)?message-id:[ \t]*\r?\n?[ \t]*<([^<>\s]+@[^<>\s]+)>",
    re.IGNORECASE | re.MULTILINE,
)


def bounced_message_ids(mail: ParsedMail) -> list[str]:
    """Message-IDs of the mail that bounced: attached headers first, then quoted text.

    In-Reply-To/References come last: several providers thread their bounce to the original.
    """
    found: list[str] = []
    for headers in mail.attached_headers:
        found += [_angle_free(v) for v in headers.get("message-id", [])]
    found += mail.embedded_message_ids
    found += _MESSAGE_ID_LINE.findall(mail.text)
    if mail.in_reply_to:
        found.append(mail.in_reply_to)
    found += mail.references
    own = mail.message_id
    return list(dict.fromkeys(m for m in (_angle_free(x) for x in found) if m and m != own))


# Where a bounce's own words end and the returned mail begins.
_ORIGINAL_MARKERS = re.compile(
    r"^.*(?:copy of (?:the|your) (?:original )?message|original message (?:follows|headers)|"
    r"message headers? follows?|below this line is a copy|^[ \t]*-+ ?(?:original|returned) message).*$",
    re.IGNORECASE | re.MULTILINE,
)
# Shapes a failed address takes in the common texts: an address at the start of a line,
# followed by ':', '...', '(', ' on <date>' or nothing (qmail, Postfix, Exim, Sendmail,
# OpenSMTPD, Exchange 2003); 'RCPT TO:<a@b>'; 'Recipient: a@b'; 'delivered to <a@b>'.
_ADDR = r"[^<>\s:;,()\"']+@[^<>\s:;,()\"']+?"
_FAILED_ADDRESS_SHAPES = (
    re.compile(rf"^[ \t]*<?({_ADDR})>?(?:[ \t]*(?::|\.\.\.|\()|[ \t]+on[ \t]|[ \t]*$)", re.MULTILINE),
    re.compile(rf"rcpt to:[ \t]*<?({_ADDR})>?[ \t]*$", re.IGNORECASE | re.MULTILINE),
    re.compile(rf"^[ \t]*(?:original |final )?recipient(?: address)?:[ \t]*<?({_ADDR})>?[ \t]*$",
               re.IGNORECASE | re.MULTILINE),
    re.compile(rf"deliver(?:ed|ing|y)?(?: (?:of )?your (?:mail|message))? to:?[ \t]*<({_ADDR})>", re.IGNORECASE),
)


# A text-only warning that delivery is late, not failed: the MTA keeps trying (Exim, Postfix, Sendmail, Exchange).
_DELAY_NOTICE = re.compile(
    r"delivery attempts will continue|has not yet been delivered|not been delivered yet|will (?:keep|continue) "
    r"(?:trying|to try)|delivery (?:to .{0,120})?(?:has been |is )?delayed|warning: message .{0,200} delayed|"
    r"delivery status notification(?: \(| ?: ?)(?:mail delivery )?delay(?:ed)?|still being retried|"
    r"this is a warning (?:message )?only|could not send message for past|will be retried until|"
    r"delivery has been delayed|delivery delayed\b",
    re.IGNORECASE,
)
# A subject that says the mail failed outright (then delay words in the text are about other recipients).
_FAILURE_SUBJECT = re.compile(r"undeliver|fail|returned|non-?delivery|not (be )?delivered|rejected", re.IGNORECASE)


def failed_recipients(mail: ParsedMail) -> list[str]:
    """Addresses the bounce reports as failed: the DSN when it names any, else the text.

    A DSN's 'Action: failed' counts whatever its status class (a 4.x.x that gave up is
    still a failure); 'delayed' and success actions do not, nor does a text-only delay warning.
    """
    found: list[str] = []
    for value in mail.headers.get("x-failed-recipients", []):
        found += [a.lower() for a in _ADDRESS.findall(value)]
    head = _report_head(mail)
    recipients = _dsn_recipients(_delivery_status(mail, head))
    found += [r.recipient for r in recipients if r.recipient and r.action in ("failed", "")]
    late = _DELAY_NOTICE.search(mail.subject or "") or _DELAY_NOTICE.search(head)  # late is not failed
    if not found and not any(r.action for r in recipients) and not late:
        for shape in _FAILED_ADDRESS_SHAPES:
            found += [a.lower() for a in shape.findall(head) if _ADDRESS.fullmatch(a)]
    ignore = {mail.sender, *(a.address for a in mail.to)}
    clean = (a.strip(".;,") for a in found)
    return list(dict.fromkeys(a for a in clean if _ADDRESS.fullmatch(a) and a not in ignore
                              and _local_part(a) not in _DAEMON_LOCAL_PARTS))
