"""Classification rules as data: loading, validation, conditions, and the shipped defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.classify import ClassKind, RuleError, classify, load_rules, parse_rules
from core.mail import Address, ParsedMail


def mail(subject: str = "", body: str = "", sender: str = "user@example.org", **headers: str) -> ParsedMail:
    return ParsedMail(
        from_=Address(sender),
        to=[Address("help@example.org")],
        subject=subject,
        text=body,
        reply_text=body,
        headers={k.replace("_", "-").lower(): [v] for k, v in headers.items()},
    )


@pytest.fixture(scope="module")
def shipped():
    return load_rules()


def test_password_mail_explains_which_rule_fired(shipped) -> None:
    result = classify(mail("Forgot my password", "Could you reset it?"), shipped)
    assert result.kind is ClassKind.SERVICE_REQUEST
    assert result.category == "account"
    assert result.catalogue_item == "password-reset"
    assert result.explain().startswith(
        "service request / password reset: rule `password-reset`, subject keyword `password`"
    )
    assert result.as_json()[0]["rule"] == "password-reset"
