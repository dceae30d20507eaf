"""Loop guard rules, one small hand-written mail each."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.core.conversation import is_our_message_id, make_message_id
from helpdesk.core.loopguard import RULES, Verdicts, bounced_message_ids, failed_recipients, judge, may_auto_answer
from helpdesk.core.mail import Address, ParsedMail
from helpdesk.core.settings import Settings

HELP = "help@example.org"
DESK = Settings(data_dir=Path("unused"), address=HELP, database_url="unused", secret_key="test-secret")


def mail(
    *,
    sender: str = "alice@example.com",
    subject: str = "Printer on floor 2 is jammed",
    text: str = "Hello, the printer is jammed again.\n",
    headers: dict[str, str] | None = None,
    **fields: object,
) -> ParsedMail:
    all_headers = {"from": [sender], "subject": [subject]}
    for name, value in (headers or {}).items():
        all_headers.setdefault(name.lower(), []).append(value)
    address = sender.rpartition("<")[2].rstrip(">").lower() if "@" in sender else ""
    return ParsedMail(
        from_=Address(address),
        to=[Address(HELP)],
        subject=subject,
        text=text,
        headers=all_headers,
        message_id=str(fields.pop("message_id", "m1@mail.example.com")),
        **fields,  # type: ignore[arg-type]
    )


def verdicts(m: ParsedMail) -> Verdicts:
    return judge(m, own_addresses=[HELP], is_own_message_id=lambda mid: is_our_message_id(DESK, mid))


def fired(v: Verdicts) -> set[str]:
    return {reason.split(":")[0] for reason in v.reasons}


def test_a_person_writing_to_the_helpdesk_is_answered() -> None:
    m = mail()
    v = verdicts(m)
    assert v == Verdicts()
    assert not v.automatic
    assert may_auto_answer(m, v)
    assert v.as_json() == {"auto_reply": False, "bounce": False, "feedback_report": False, "mailing_list": False,
                           "delay": False, "challenge": False}


def test_every_rule_has_a_name_and_a_description() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert all(rule.description for rule in RULES)


@pytest.mark.parametrize("value", ["auto-replied", "Auto-Replied; owner-email=x@example.com"])
def test_auto_submitted_auto_replied_is_an_auto_reply(value: str) -> None:
    v = verdicts(mail(headers={"Auto-Submitted": value}))
    assert v.auto_reply and v.automatic
    assert "auto-submitted-reply" in fired(v)


def test_auto_submitted_auto_generated_is_automatic_but_no_reply() -> None:
    # A monitoring alert: it must still open an event, but never get an acknowledgement.
    m = mail(sender="nagios@monitor.example.com", headers={"Auto-Submitted": "auto-generated"})
    v = verdicts(m)
    assert not v.auto_reply and v.auto_generated and v.automatic
    assert not may_auto_answer(m, v)


def test_auto_submitted_no_is_a_person() -> None:
    assert not verdicts(mail(headers={"Auto-Submitted": "no"})).automatic


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-Autoreply", "yes"), ("X-Autorespond", "Vacation"), ("X-Apple-Action", "VACATION"),
     ("Precedence", "auto_reply")],
)
def test_autoresponder_headers_are_auto_replies(header: str, value: str) -> None:
    v = verdicts(mail(headers={header: value}))
    assert v.auto_reply, v.reasons


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Printer",
        "Out of Office AutoReply: VPN down",
        "Automatic reply: VPN down",
        "Auto reply: Nyaan",
        "AutoRespons :Nyaan?",
        "Abwesenheitsnotiz: Drucker",
        "Automatische Antwort: Drucker",
        "Réponse automatique : imprimante",
        "Ārpus biroja atrašanās automātiskā atbilde: VPN",
        "Out of office",
    ],
)
def test_vacation_subjects_are_auto_replies(subject: str) -> None:
    v = verdicts(mail(subject=subject))
    assert v.auto_reply, subject
    assert "vacation-subject" in fired(v)


@pytest.mark.parametrize(
    "subject",
    [
        "Out of office next week, please reassign my tickets",
        "Re: Automatic reply: VPN down",
        "Fwd: Abwesenheitsnotiz: Drucker",
        "How do I set up an automatic reply in Outlook?",
    ],
)
def test_people_writing_about_absence_are_not_auto_replies(subject: str) -> None:
    assert not verdicts(mail(subject=subject)).automatic


def test_x_auto_response_suppress_is_respected() -> None:
    v = verdicts(mail(headers={"X-Auto-Response-Suppress": "OOF, AutoReply"}))
    assert v.auto_generated and not v.auto_reply


@pytest.mark.parametrize("value", ["list", "bulk", "junk"])
def test_precedence_list_bulk_junk_are_not_answered(value: str) -> None:
    v = verdicts(mail(headers={"Precedence": value}))
    assert v.automatic
    assert v.mailing_list == (value == "list")


@pytest.mark.parametrize(
    ("header", "value"),
    [("List-Id", "IT news <it-news.example.org>"), ("List-Unsubscribe", "<mailto:leave@example.org>")],
)
def test_list_headers_are_mailing_list(header: str, value: str) -> None:
    v = verdicts(mail(headers={header: value}))
    assert v.mailing_list and v.automatic


def test_empty_return_path_is_not_answered() -> None:
    m = mail(headers={"Return-Path": "<>"})
    v = verdicts(m)
    assert v.auto_generated and not v.bounce
    assert not may_auto_answer(m, v)


@pytest.mark.parametrize(
    "sender", ["MAILER-DAEMON@mx.example.com", "postmaster@example.com", "Mail Delivery System <x@example.com>"]
)
def test_mail_system_senders_are_not_answered(sender: str) -> None:
    v = verdicts(mail(sender=sender))
    assert v.auto_generated and "daemon-sender" in fired(v)


def test_noreply_sender_is_not_answered() -> None:
    assert verdicts(mail(sender="no-reply@shop.example.com")).auto_generated


def test_our_own_address_is_own_mail() -> None:
    v = verdicts(mail(sender="Helpdesk <help+42-abc123@example.org>"))
    assert v.own_mail and v.automatic


def test_a_message_id_we_signed_is_own_mail_and_one_from_our_domain_is_not() -> None:
    signed = mail(message_id=make_message_id(DESK, 7))
    client = mail(message_id="5f1c9a@example.org")  # a user's mail client, same domain
    other_desk = Settings(data_dir=Path("unused"), address=HELP, database_url="unused", secret_key="other")
    forged = mail(message_id=make_message_id(other_desk, 7))
    for m, expected in ((signed, True), (client, False), (forged, False)):
        assert verdicts(m).own_mail is expected
    assert not judge(signed, own_addresses=[HELP]).own_mail  # no check given: no Message-ID is ours


DSN_FAILED = """Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; bob@example.net
Original-Recipient: rfc822;bob@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected

Final-Recipient: rfc822; carol@example.net
Action: delayed
Status: 4.4.1
"""


def test_dsn_failure_is_a_bounce_with_its_failed_recipients() -> None:
    m = mail(
        sender="MAILER-DAEMON@mx.example.com",
        subject="Undelivered Mail Returned to Sender",
        headers={"Auto-Submitted": "auto-replied", "Return-Path": "<>"},
        content_type="multipart/report",
        report_type="delivery-status",
        delivery_status=DSN_FAILED,
        attached_headers=[{"message-id": ["<hd.7.aa.bb@example.org>"]}],
    )
    v = verdicts(m)
    assert v.bounce and not v.auto_reply  # reported as what it is
    assert any(r.startswith("dsn: DSN report-type=delivery-status") for r in v.reasons)
    assert failed_recipients(m) == ["bob@example.net"]
    assert bounced_message_ids(m) == ["hd.7.aa.bb@example.org"]


def test_dsn_delay_is_no_bounce_and_names_no_failed_recipient() -> None:
    m = mail(
        sender="MAILER-DAEMON@mx.example.com",
        report_type="delivery-status",
        delivery_status="Final-Recipient: rfc822; carol@example.net\nAction: delayed\nStatus: 4.4.1\n",
    )
    v = verdicts(m)
    assert v.delay and not v.bounce and v.automatic and not v.auto_reply
    assert "dsn-delay" in fired(v)
    assert failed_recipients(m) == []


@pytest.mark.parametrize(("subject", "text"), [
    ("Warning: message 1abc-0002 delayed 24 hours",  # Exim
     "This message was created automatically by mail delivery software.\nA message that you sent has not yet been "
     "delivered to one or more of its\nrecipients after more than 24 hours on the queue on mx.example.com.\n\n"
     "  carol@example.net\n    host mx.example.net: Connection timed out\n\nNo action is required on your part. "
     "Delivery attempts will continue for\nsome time, and this warning may be repeated at intervals\n"),
    ("Delayed Mail (still being retried)",  # Postfix, DSN fields as plain text
     "This is the mail system at host mx.example.com.\n\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR "
     "MESSAGE. #\n\n<carol@example.net>: connect to mx.example.net[192.0.2.2]:25: No route to host\n\n"
     "Final-Recipient: rfc822; carol@example.net\nAction: delayed\nStatus: 4.4.1\n"),
    ("Warning: could not send message for past 4 hours",  # Sendmail
     "    **********************************************\n    **      THIS IS A WARNING MESSAGE ONLY      **\n"
     "    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n    **********************************************\n\n"
     "The original message was received at Wed, 25 Nov 2026 09:00:00 GMT\n\n"
     "   ----- Transcript of session follows -----\n<carol@example.net>... Deferred: Connection timed out\n"
     "Warning: message still undelivered after 4 hours\nWill keep trying until message is 5 days old\n"),
])
def test_text_delay_notices_from_a_mail_system_are_delays_not_bounces(subject: str, text: str) -> None:
    m = mail(sender="Mail Delivery System <MAILER-DAEMON@mx.example.com>", subject=subject, text=text,
             headers={"Auto-Submitted": "auto-replied"})
    v = verdicts(m)
    assert v.delay and not v.bounce and not v.auto_reply, v.reasons
    assert failed_recipients(m) == []


def test_a_person_asking_about_a_delayed_mail_is_no_delay() -> None:
    v = verdicts(mail(subject="Warning: message delayed?", text="I got a delay warning, delivery attempts will continue."))
    assert not v.automatic


# Challenge-response filters ask the sender to prove to be a person; answering them starts a loop.
BOXBE = (
    "Hello help@example.org,\n\n"
    "I use Boxbe to protect my inbox. Your message \"[#12] Your request was received\" has been placed in my "
    "Waiting List.\n\nTo make sure your messages reach my inbox, please click the link below and add yourself to "
    "my Guest List:\nhttps://www.boxbe.com/anno?tc=1234567890_987654321\n\nThank you,\ncarol@example.net\n\n"
    "Powered by Boxbe -- \"End Email Overload\"\n"
)
SPAMARREST = (
    "Greetings,\n\nYou just sent an email to my email address. As a result of spam, I am now using Spam Arrest "
    "to protect my inbox. To complete this verification, please click the following link:\n\n"
    "http://www.spamarrest.com/a2?ABCDEF123456\n\nAfter you verify, your message will be delivered to me. "
    "You only have to do this once.\n\nThank you,\ncarol@example.net\n"
)
GENERIC_CR = (
    "Your message to dave@example.net has been held.\n\nThis mailbox is protected by a challenge-response "
    "filter. To have your message delivered, please verify that you are a real person by replying to this "
    "message or by visiting the link below. Unverified messages are deleted after 7 days.\n"
)


@pytest.mark.parametrize(("sender", "subject", "text", "headers"), [
    ("Carol via Boxbe <notify@boxbe.com>", "Request to join my Guest List (Action Required)", BOXBE, {}),
    ("carol@example.net", "Re: [#12] Your request was received (Action Required)", BOXBE,
     {"Return-Path": "<bounce-carol=example.net@boxbe.com>"}),
    ("carol@example.net", "Spam Arrest verification request [Verification ID: 12345]", SPAMARREST,
     {"Return-Path": "<verify@spamarrest.com>"}),
    ("dave@example.net", "Please verify your message to dave@example.net", GENERIC_CR,
     {"Auto-Submitted": "auto-replied"}),
])
def test_challenge_response_mail_is_automatic_and_no_bounce(sender: str, subject: str, text: str,
                                                            headers: dict[str, str]) -> None:
    m = mail(sender=sender, subject=subject, text=text, headers=headers)
    v = verdicts(m)
    assert v.challenge and v.automatic and not v.bounce, v.reasons
    assert not may_auto_answer(m, v)
    assert failed_recipients(m) == [] or not v.bounce


def test_a_person_asking_to_verify_an_address_is_no_challenge() -> None:
    v = verdicts(mail(subject="Action Required: please verify my new email address",
                      text="Hi, I changed my address; can you verify that the guest list on the wiki has it?"))
    assert not v.automatic


def test_dsn_success_is_a_delivery_notice() -> None:
    m = mail(
        report_type="delivery-status",
        delivery_status="Final-Recipient: rfc822; carol@example.net\nAction: delivered\nStatus: 2.0.0\n",
    )
    v = verdicts(m)
    assert not v.bounce and v.delivery_notice and v.automatic


def test_read_receipt_is_a_delivery_notice() -> None:
    v = verdicts(mail(report_type="disposition-notification", subject="Read: VPN down"))
    assert v.delivery_notice and not v.bounce


def test_arf_report_is_a_feedback_report() -> None:
    m = mail(
        sender="feedback@arf.mail.example.com",
        subject="FW: Your ticket 42",
        report_type="feedback-report",
        feedback_report="Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n",
    )
    v = verdicts(m)
    assert v.feedback_report and not v.bounce
    assert "type=abuse" in " ".join(v.reasons)


QMAIL = """Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<bob@example.net>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <bob@example.net>... User Unknown

--- Below this line is a copy of the message.

Message-ID: <hd.7.aa.bb@example.org>
From: help@example.org
To: bob@example.net
"""

EXIM = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bob@example.net
    retry timeout exceeded

------ This is a copy of the message, including all the headers. ------

Message-Id: <hd.7.aa.bb@example.org>
To: bob@example.net
"""

POSTFIX = """This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<bob@example.net>: host mx.example.net[192.0.2.1] said: 550 5.1.1 User unknown
"""


@pytest.mark.parametrize(
    ("sender", "subject", "text"),
    [
        ("MAILER-DAEMON@mx.example.net", "failure notice", QMAIL),
        ("Mail Delivery System <Mailer-Daemon@mx.example.net>", "Mail delivery failed: returning message to sender",
         EXIM),
        ("MAILER-DAEMON@mx.example.net (Mail Delivery System)", "Undelivered Mail Returned to Sender", POSTFIX),
    ],
    ids=["qmail", "exim", "postfix-text"],
)
def test_nonstandard_bounces_are_recognised(sender: str, subject: str, text: str) -> None:
    m = mail(sender=sender, subject=subject, text=text)
    v = verdicts(m)
    assert v.bounce, v.reasons
    assert failed_recipients(m) == ["bob@example.net"]


@pytest.mark.parametrize("text", [QMAIL, EXIM])
def test_message_id_of_the_bounced_mail_is_found_in_the_text(text: str) -> None:
    m = mail(sender="MAILER-DAEMON@mx.example.net", subject="failure notice", text=text)
    assert bounced_message_ids(m) == ["hd.7.aa.bb@example.org"]


def test_exchange_text_bounce_needs_no_dsn() -> None:
    text = "Your message did not reach some or all of the intended recipients.\n\n  bob@example.net on 1/2/2024\n"
    m = mail(sender="postmaster@example.net", subject="Undeliverable: VPN", text=text)
    assert verdicts(m).bounce
    assert failed_recipients(m) == ["bob@example.net"]


def test_x_failed_recipients_names_the_failed_address() -> None:
    m = mail(
        sender="Mailer-Daemon@mx.example.net",
        subject="Mail delivery failed",
        text=EXIM,
        headers={"X-Failed-Recipients": "bob@example.net"},
    )
    assert failed_recipients(m) == ["bob@example.net"]


def test_a_person_forwarding_a_bounce_opens_a_ticket() -> None:
    # "My mail bounced, what does this mean?" is a real request, not a bounce.
    m = mail(subject="Fwd: Mail delivery failed: returning message to sender", text="Help?\n\n" + EXIM)
    v = verdicts(m)
    assert not v.bounce and not v.automatic
    assert may_auto_answer(m, v)


def test_a_person_mentioning_delivery_problems_is_no_bounce() -> None:
    text = "Since this morning my mail could not be delivered to our partner, error 550 5.1.1.\n"
    assert not verdicts(mail(subject="Mail to partner fails", text=text)).automatic


def test_a_person_quoting_a_bounce_subject_and_text_is_no_bounce() -> None:
    text = "My mail could not be delivered to bob@example.net, user unknown. Can you check?\n"
    assert not verdicts(mail(subject="Mail delivery failed", text=text)).bounce


def test_a_monitoring_alert_about_mail_delivery_is_no_bounce() -> None:
    # It must reach event management, not be filed away as a bounce of nothing.
    m = mail(
        sender="zabbix@monitor.example.org",
        subject="PROBLEM: mail queue on mx1 above 500",
        text="Host mx1: 512 messages could not be delivered, permanent error on relay.\n",
        headers={"Auto-Submitted": "auto-generated"},
    )
    v = verdicts(m)
    assert not v.bounce and v.auto_generated


def test_bounce_list_headers_of_the_original_do_not_count() -> None:
    m = mail(
        sender="MAILER-DAEMON@mx.example.net",
        subject="failure notice",
        text=QMAIL,
        attached_headers=[{"list-id": ["<it-news.example.org>"], "precedence": ["list"]}],
    )
    assert not verdicts(m).mailing_list


def test_in_reply_to_of_a_bounce_is_a_last_resort() -> None:
    m = mail(
        sender="mailer-daemon@googlemail.com",
        subject="Delivery Status Notification (Failure)",
        text="Delivery to the following recipient failed permanently:\n\n     bob@example.net\n",
        in_reply_to="hd.9.aa.bb@example.org",
        references=["hd.9.aa.bb@example.org"],
    )
    assert verdicts(m).bounce
    assert bounced_message_ids(m) == ["hd.9.aa.bb@example.org"]


def test_amazon_ses_bounce_notification() -> None:
    text = '{"Type":"Notification","Message":"{\\"notificationType\\":\\"Bounce\\",\\"bounce\\":{}}"}'
    v = verdicts(mail(sender="no-reply@sns.amazonaws.com", subject="AWS Notification Message", text=text))
    assert v.bounce


def test_may_auto_answer_needs_an_address() -> None:
    m = mail(sender="undisclosed")
    assert not may_auto_answer(m, verdicts(m))
