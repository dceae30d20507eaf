"""The per-address limit on automatic mail counts the last hour and the last day, each on its own."""

from __future__ import annotations

from datetime import timedelta

from helpdesk.core import ratelimit
from helpdesk.core.db import transaction
from helpdesk.core.models import Outbox, utcnow
from helpdesk.core.ratelimit import RateLimit


def _queued(session, rcpt: str, ago: timedelta, *, automatic: bool = True, n: int = 1) -> None:
    for _ in range(n):
        session.add(Outbox(
            message_id=f"<{len(session.new)}-{ago.total_seconds()}-{rcpt}-{utcnow().timestamp()}@example.org>",
            purpose="acknowledgement", mail_from="help@example.org", recipients=[rcpt], rcpt=rcpt,
            raw=b"x", automatic=automatic, created_at=utcnow() - ago,
        ))
    session.flush()


def test_the_day_limit_holds_when_the_hour_is_quiet(session_factory) -> None:
    limit = RateLimit(per_hour=10, per_day=5)
    with transaction(session_factory) as session:
        _queued(session, "bot@example.com", timedelta(hours=3), n=4)
        _queued(session, "bot@example.com", timedelta(hours=30), n=20)  # older than a day: not counted
        _queued(session, "bot@example.com", timedelta(hours=2), automatic=False, n=5)  # people's replies: not counted
        assert ratelimit.usage(session, "bot@example.com") == ratelimit.Usage(last_hour=0, last_day=4)
        assert ratelimit.allows(session, "BOT@example.com", limit)
        _queued(session, "bot@example.com", timedelta(hours=5))
        assert ratelimit.usage(session, "bot@example.com") == ratelimit.Usage(last_hour=0, last_day=5)
        assert not ratelimit.allows(session, "bot@example.com", limit)  # the day is full, the hour empty
        assert ratelimit.allows(session, "other@example.com", limit)


def test_the_hour_limit_holds_before_the_day_is_full(session_factory) -> None:
    limit = RateLimit(per_hour=3, per_day=40)
    with transaction(session_factory) as session:
        _queued(session, "bot@example.com", timedelta(minutes=10), n=3)
        assert ratelimit.usage(session, "bot@example.com") == ratelimit.Usage(last_hour=3, last_day=3)
        assert not ratelimit.allows(session, "bot@example.com", limit)
