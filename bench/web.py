"""Benchmark: console pages on a large database, against a small one of the same kind as baseline.

    python bench/web.py [--database sqlite|postgresql|both] [--postgres-url URL] [--tickets 100000]
                        [--messages-per-ticket 5] [--small 1000] [--runs 60] [--pages due,reports]

Generates both databases (bulk inserts straight through sqlite3, or COPY through psycopg, then the
search index is built once), logs in as an agent and measures the server time of the queue page,
a filtered queue, text searches, the queue sorted by due date and the reports page: p50/p95 per
page and database, the large/small ratio, and each page's target. PostgreSQL: the databases are
made in the server at --postgres-url (its maintenance database), or in a throwaway cluster started
the way the tests start theirs.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpdesk.core.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from helpdesk.core.models import Role  # noqa: E402
from helpdesk.core.settings import Settings  # noqa: E402
from helpdesk.core.users import create_user  # noqa: E402
from helpdesk.web import create_app  # noqa: E402

PASSWORD = "bench-password"
AGENT = "agent0@example.org"
KINDS = ("incident", "service_request", "access_request")
STATUSES = ("new", "open", "pending", "in_progress", "resolved", "closed", "closed", "closed")
PRIORITIES = ("P1", "P2", "P3", "P3", "P4", "P4", "P4", "P5")
CATEGORIES = ("network", "email", "hardware", "software", "account", "access", "printing", "security", "general")
TOPICS = (
    "vpn", "printer", "toner", "password", "outlook", "laptop", "monitor", "wifi", "licence", "sharepoint",
    "backup", "server", "database", "keyboard", "docking", "certificate", "firewall", "teams", "phone", "badge",
)
# page: (url, target for the large database's wall-clock p95 in ms)
PAGES = {
    "queue": ("/tickets", 100.0),
    "filtered": ("/tickets?kind=incident&priority=P2&category=network&sort=updated", 100.0),
    "search": ("/tickets?q=printer+toner&status=any", 50.0),
    "search1": ("/tickets?q=toner", 50.0),  # one common word: some 30,000 matching messages at full size
    "ranked": ("/tickets?q=printer+toner&sort=relevance", 50.0),
    "due": ("/tickets?sort=due&status=any", 50.0),  # the whole queue by due date
}
REPORTS = ("/reports", 300.0)


def words(rng: random.Random, vocabulary: list[str], n: int) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def rows(tickets: int, per_ticket: int, now: datetime, agent_ids: list[int], seed: int = 7):  # type: ignore[no-untyped-def]
    """(table, columns, rows) to fill: contacts, tickets, messages and SLA marks, the same on each database."""
    rng = random.Random(seed)
    vocabulary = [f"w{rng.randrange(36**4):x}" for _ in range(3000)] + list(TOPICS) * 5
    users = max(50, tickets // 20)
    yield "contact", ("id", "email", "role", "undeliverable", "created_at"), (
        (i, f"user{i}@example.com", "user", False, now) for i in range(1000, 1000 + users)
    )

    def ticket_rows():  # type: ignore[no-untyped-def]
        for number in range(1, tickets + 1):
            created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
            topic = rng.choice(TOPICS)
            due = created + timedelta(hours=rng.randrange(8, 24 * 14)) if rng.random() < 0.7 else None
            yield (
                number, rng.choice(KINDS), rng.choice(CATEGORIES), rng.randint(1, 3), rng.randint(1, 3),
                rng.choice(PRIORITIES), rng.choice(STATUSES), f"{topic} {words(rng, vocabulary, 5)}",
                rng.randrange(1000, 1000 + users), rng.choice(agent_ids + [None] * len(agent_ids)),
                "[]", created, created + timedelta(minutes=rng.randrange(60 * 24 * 7)), due,
            )

    yield "ticket", ("id", "kind", "category", "impact", "urgency", "priority", "status", "subject", "requester_id",
                     "assignee_id", "classification", "created_at", "updated_at", "due_at"), ticket_rows()

    def message_rows():  # type: ignore[no-untyped-def]
        for number in range(1, tickets + 1):
            for k in range(per_ticket):
                text = words(rng, vocabulary, rng.randint(20, 60))
                yield (number, "in" if k % 2 == 0 else "out", False, f"user{number}@example.com", "[]", "[]", "[]",
                       f"Re: ticket {number}", text, f"<m{number}.{k}@example.com>", now)

    yield "message", ("ticket_id", "direction", "internal", "from_address", "to", "cc", "references", "subject",
                      "text", "message_id", "created_at"), message_rows()
    yield "sla_mark", ("ticket_id", "metric", "level", "at", "elapsed_seconds", "target_seconds"), (
        (n, "resolution", rng.choice(("warning", "breach")), now, 100, 80)
        for n in rng.sample(range(1, tickets + 1), tickets // 20)
    )


def _columns(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def generate(url: str, tickets: int, per_ticket: int) -> float:
    """Fill a migrated database straight through its driver (executemany / COPY, not the ORM); seconds taken."""
    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        agent_ids = [row[0] for row in conn.execute("SELECT id FROM contact WHERE role IN ('agent', 'admin')")]
        for table, columns, values in rows(tickets, per_ticket, now.replace(tzinfo=None), agent_ids):
            marks = ",".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} ({_columns(columns)}) VALUES ({marks})", values)
        conn.commit()
        conn.execute("ANALYZE")
        conn.close()
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
            agent_ids = [row[0] for row in pg.execute("SELECT id FROM contact WHERE role IN ('agent', 'admin')")]
            for table, columns, values in rows(tickets, per_ticket, now, agent_ids):
                with pg.cursor().copy(f"COPY {table} ({_columns(columns)}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            for table in ("contact", "ticket", "message", "sla_mark"):
                pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            pg.commit()
            pg.autocommit = True
            pg.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def build(directory: Path, url: str, tickets: int, per_ticket: int):  # type: ignore[no-untyped-def]
    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=directory, database_url=url, secret_key="bench")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        for i in range(20):
            create_user(session, f"agent{i}@example.org", Role.AGENT, PASSWORD)
    fill = generate(url, tickets, per_ticket)
    started = time.perf_counter()
    app = create_app(settings, factory)  # builds the search index for the existing rows
    index = time.perf_counter() - started
    if not url.startswith("sqlite"):
        # Start-up rewrote the tickets (search vectors, SLA outcomes): measure the steady state that
        # autovacuum reaches within a minute, not a queue whose every row has a dead twin.
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
            pg.execute("VACUUM ANALYZE")
    print(f"  {tickets:,} tickets, {tickets * per_ticket:,} messages: generated in {fill:.1f} s, "
          f"search index in {index:.1f} s", flush=True)
    return app


def login(app):  # type: ignore[no-untyped-def]
    import re

    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post("/login", data={"email": AGENT, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.status_code
    return client


def measure(client, url: str, runs: int, warmup: int = 3) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Wall-clock and CPU milliseconds of each request, handled in this thread (the server time)."""
    for _ in range(warmup):
        client.get(url)
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        response = client.get(url)
        response.get_data()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        assert response.status_code == 200
    return wall, cpu


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def print_rows(
    page: str, small: tuple[list[float], list[float]], large: tuple[list[float], list[float]], target: float
) -> None:
    for clock, s, l in (("wall", small[0], large[0]), ("cpu", small[1], large[1])):
        mark = f"{target:>7.0f}ms" if clock == "wall" else ""
        print(f"{page:<10}{clock:<6}{statistics.median(s):>9.1f}ms{p95(s):>9.1f}ms"
              f"{statistics.median(l):>9.1f}ms{p95(l):>9.1f}ms{p95(l) / p95(s):>10.2f}x{mark}", flush=True)


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """A PostgreSQL maintenance database URL: the given one, or a throwaway cluster's."""
    if url:
        yield url
        return
    from tests.servers.postgres import PostgresCluster, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries found: pass --postgres-url")
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster.url()
    finally:
        cluster.stop()


def database_urls(kind: str, tmp: Path, server: str | None) -> dict[str, str]:
    """The small (baseline) and large database of one kind."""
    if kind == "sqlite":
        return {size: f"sqlite:///{tmp / kind / size / 'helpdesk.sqlite3'}" for size in ("small", "large")}
    assert server is not None
    base = server.replace("postgresql+psycopg://", "postgresql://")
    urls = {}
    with psycopg.connect(base, autocommit=True) as pg:
        for size in ("small", "large"):
            name = f"helpdesk_bench_{os.getpid()}_{size}"
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg.execute(f'CREATE DATABASE "{name}"')
            urls[size] = make_url(server).set(drivername="postgresql+psycopg", database=name).render_as_string(False)
    return urls


def bench(kind: str, urls: dict[str, str], tmp: Path, args: argparse.Namespace) -> list[str]:
    """Measure every page on both sizes of one database; the pages over their target."""
    print(f"\n== {kind}: generating the baseline and the large database ...", flush=True)
    sizes = {"small": args.small, "large": args.tickets}
    apps = {size: build(tmp / kind / size, urls[size], n, args.messages_per_ticket) for size, n in sizes.items()}
    clients = {name: login(app) for name, app in apps.items()}
    print(f"load average before measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    header = f"{'small p50':>11}{'small p95':>11}{'large p50':>11}{'large p95':>11}{'p95 ratio':>11}{'target':>9}"
    print(f"\n{'page':<10}{'clock':<6}{header}")
    over = []
    pages = dict(PAGES, reports=REPORTS) if args.report_runs > 1 else PAGES
    if args.pages:
        pages = {name: page for name, page in pages.items() if name in args.pages.split(",")}
    for page, (url, target) in pages.items():
        runs, warmup = (args.report_runs, 1) if page == "reports" else (args.runs, 3)
        small = measure(clients["small"], url, runs, warmup)
        large = measure(clients["large"], url, runs, warmup)
        print_rows(page, small, large, target)
        if p95(large[0]) >= target:
            over.append(f"{kind} {page} {p95(large[0]):.1f} ms (target {target:.0f} ms)")
    for app in apps.values():
        app.extensions["helpdesk"].session_factory.kw["bind"].dispose()
    return over


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's maintenance database (default: a throwaway cluster)")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages-per-ticket", type=int, default=5)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--report-runs", type=int, default=10, help="runs of the reports page (0: skip it)")
    parser.add_argument("--pages", help="only these pages, comma-separated (e.g. due,reports)")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    over: list[str] = []
    with tempfile.TemporaryDirectory(prefix="helpdesk-bench-") as tmp:
        for kind in kinds:
            if kind == "sqlite":
                over += bench(kind, database_urls(kind, Path(tmp), None), Path(tmp), args)
                continue
            with postgres_server(args.postgres_url) as server:
                over += bench(kind, database_urls(kind, Path(tmp), server), Path(tmp), args)
    print(f"\nover target: {'; '.join(over) if over else 'none'} (load average now {os.getloadavg()[0]:.1f})")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
