"""Commands of the ITIL processes: SLA check, events, audit trail, report."""

from __future__ import annotations

import argparse
import sys

from helpdesk.commands.common import EX_USAGE, build_app, json_text, print_items, print_json
from helpdesk.core.models import MAX_ID


def cmd_sla(args: argparse.Namespace) -> int:
    from helpdesk.core import access, sla
    from helpdesk.core.db import transaction
    from helpdesk.core.models import utcnow

    app = build_app(args)
    with transaction(app.factory) as session:
        findings = sla.check(session, app.settings, utcnow())
        grants = access.warn_expiring(session, app.settings, utcnow())
        items = [
            {"ticket": f.ticket_id, "metric": f.metric.value, "level": f.level.value,
             "elapsed_minutes": round(f.elapsed.total_seconds() / 60), "target_minutes": round(f.target.total_seconds() / 60),
             "notified": list(f.notified)}
            for f in findings
        ]
    print_items(
        items, args.json,
        lambda i: f"#{i['ticket']} {i['metric']} {i['level']}: {i['elapsed_minutes']} of {i['target_minutes']} min; "
                  f"told {', '.join(i['notified']) or 'nobody'}",
    )
    if not args.json:
        print(f"{len(items)} new SLA finding(s)")
        for gid in grants.warned:
            print(f"access grant {gid}: expires within {app.settings.access.expiry_warning_days} days, holder told")
        for gid in grants.expired:
            print(f"access grant {gid}: expired, access ended")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from helpdesk.core import events

    if args.limit is not None and args.limit < 1:
        # SQLite reads LIMIT -1 as "no limit", PostgreSQL refuses it: neither is what was asked.
        print(f"helpdesk events: --limit must be 1 or more, not {args.limit}", file=sys.stderr)
        return EX_USAGE
    app = build_app(args)
    # More than there can be rows is all of them; SQLite cannot even take a number past 2**63.
    limit = min(args.limit, MAX_ID) if args.limit is not None else None
    with app.factory() as session:
        items = events.list_events(session, limit=limit)
    print_items(
        items, args.json,
        lambda e: f"{e['source']:<12} {e['severity']:<13} {e['state']:<10} {e['host']}/{e['service'] or ''} "
                  + (f"#{e['ticket']}" if e["ticket"] else "-"),
    )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from helpdesk.core import audit

    app = build_app(args)
    with app.factory() as session:
        result = audit.verify(session)
    if result.ok:
        print(f"audit trail intact: {result.checked} entries verified")
        return 0
    print(f"audit trail BROKEN: {result.reason} ({result.checked} entries checked)", file=sys.stderr)
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    from helpdesk.core import reports
    from helpdesk.core.models import utcnow

    app = build_app(args)
    with app.factory() as session:
        data = reports.report(session, utcnow(), sla=app.settings.sla)
    if args.json:
        print_json(data)
    else:
        print(json_text(data, indent=2))
    return 0
