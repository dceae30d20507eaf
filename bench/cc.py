"""Benchmark: a mail with a huge Cc list through intake (store, parse, watchers, notifications), against a
mail with one Cc address.

    python bench/cc.py [COUNT ...] [--timeout SECONDS] [--database-url URL]

For each count (default 1,000, 10,000 and 60,000 Cc addresses, in Cc headers of 1,000 each) the mail is
stored and processed on a fresh database (SQLite by default), timed in this process; the baseline is a
mail with one Cc address, measured in the same run. Each figure is the median of three runs. Prints each
time as a ratio to the baseline and to the first count: linear handling shows as ratios no larger than
the ratio of the counts, not its square. A run over ``--timeout`` is reported and the counts after it skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpdesk.core import db  # noqa: E402
from tests.core.desk import Desk, make_desk  # noqa: E402

PER_HEADER = 1000
RUNS = 3


def cc_mail(count: int) -> bytes:
    addresses = [f"person{n}@example.net" for n in range(count)]
    headers = "".join(
        "Cc: " + ",\r\n ".join(addresses[start : start + PER_HEADER]) + "\r\n"
        for start in range(0, count, PER_HEADER)
    )
    return (
        "From: Alice <alice@example.com>\r\nTo: help@example.org\r\n" + headers
        + f"Subject: Printer jammed ({count} in Cc)\r\nMessage-ID: <cc-{count}@example.com>\r\n"
        "Content-Type: text/plain\r\n\r\nThe printer on floor 3 is jammed.\r\n"
    ).encode()


@contextmanager
def fresh_desk(workdir: Path, database_url: str | None) -> Iterator[Desk]:
    """Intake on a fresh database in ``workdir`` (SQLite by default; a PostgreSQL URL is reused as it is)."""
    workdir.mkdir()
    engine = db.make_engine(database_url or f"sqlite:///{workdir / 'helpdesk.sqlite3'}")
    try:
        db.upgrade(engine)
        yield make_desk(db.make_sessionmaker(engine), workdir)
    finally:
        engine.dispose()


def ingest_seconds(count: int, workdir: Path, database_url: str | None) -> float:
    """Seconds to store and process the mail on a fresh database."""
    raw = cc_mail(count)
    with fresh_desk(workdir, database_url) as desk:
        started = time.perf_counter()
        result = desk.deliver(raw)
        took = time.perf_counter() - started
    if result.ticket_id is None:
        raise SystemExit(f"{count} Cc: no ticket ({result.status.value}: {result.reason})")
    return took


def median_seconds(count: int, workdir: Path, database_url: str | None) -> float:
    return statistics.median(ingest_seconds(count, workdir / f"{count}-{run}", database_url) for run in range(RUNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", type=int, nargs="*", default=[1000, 10000, 60000], metavar="COUNT")
    parser.add_argument("--timeout", type=float, default=300, help="skip larger counts after a run this long")
    parser.add_argument("--database-url", help="default: a fresh SQLite file per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="helpdesk-bench-") as tmp:
        ingest_seconds(1, Path(tmp) / "warm-up", args.database_url)  # imports, rules, templates
        base = median_seconds(1, Path(tmp), args.database_url)
        print(f"baseline, 1 Cc address: {base * 1000:.0f} ms")
        first: float | None = None
        for count in args.counts:
            took = ingest_seconds(count, Path(tmp) / f"{count}-probe", args.database_url)
            if took > args.timeout:
                print(f"{count:>7} Cc: {took:.0f} s, over {args.timeout:.0f} s: larger counts skipped")
                break
            took = statistics.median([took, *(ingest_seconds(count, Path(tmp) / f"{count}-{run}", args.database_url)
                                              for run in range(RUNS - 1))])
            first = first or took
            print(f"{count:>7} Cc: {took:7.2f} s = {took / base:7.1f} x baseline, {took / first:5.1f} x {args.counts[0]} Cc"
                  f" (counts ratio {count / args.counts[0]:.0f})")


if __name__ == "__main__":
    main()
