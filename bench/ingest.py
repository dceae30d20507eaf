"""Benchmark: inbound mail, end to end, against raw fetch + parse as the baseline.

    python bench/ingest.py N [--database-url URL]

Fills a throwaway Dovecot with N realistic mails (plain, HTML, attachments, replies, non-ASCII),
then measures in the same run
  1. baseline: raw ``UID FETCH BODY.PEEK[]`` of all N in batches plus mail-parser on each;
  2. ``helpdesk poll --once`` as a subprocess on a fresh database (SQLite by default): fetch, store,
     parse, classify, open tickets, write the outbox, move the mail;
and prints both rates, their ratio (target, issue 13: one process on SQLite end to end >= 0.3x the
baseline), the stages' rates from the poller's log, and its peak memory (target: < 200 MB for a
10,000-mail backlog).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mailparser
from imapclient import IMAPClient

from inbound import HELPDESK, fill_maildir, helpdesk_env, start_dovecot

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "mailgateway", "helpdesk", "web")


def compiled_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a poller that starts from compiled modules, as an installed desk does (pip compiles them at
    install time): with PYTHONDONTWRITEBYTECODE set, an editable checkout would compile ~65 of them at
    every start (~0.1 s, measured) and the start-up would count a cost no deployment has."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(REPO / p) for p in PACKAGES)], check=True)
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def baseline(server, count: int, batch: int = 100) -> float:  # type: ignore[no-untyped-def]
    """Mails per second for UID FETCH BODY.PEEK[] + mailparser.parse_from_bytes."""
    started = time.perf_counter()
    with server.client() as conn:
        conn: IMAPClient
        conn.select_folder("INBOX", readonly=True)
        uids = sorted(conn.search("ALL"))
        assert len(uids) == count, (len(uids), count)
        for start in range(0, len(uids), batch):
            data = conn.fetch(uids[start : start + batch], ["BODY.PEEK[]"])
            for item in data.values():
                mailparser.parse_from_bytes(bytes(item[b"BODY[]"]))
    return count / (time.perf_counter() - started)


def end_to_end(server, count: int, database_url: str | None, workdir: Path) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(mails per second, seconds, peak RSS in MB) of `helpdesk poll --once`."""
    url = database_url or f"sqlite:///{workdir / 'helpdesk.sqlite3'}"
    env = compiled_env(helpdesk_env(workdir / "data", url, server))
    subprocess.run([HELPDESK, "init"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    with (workdir / "poll.log").open("wb") as log:
        proc = subprocess.Popen([HELPDESK, "poll", "--once"], env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"helpdesk poll --once failed ({status}); see {workdir / 'poll.log'}")
    tickets = subprocess.run([HELPDESK, "tickets"], env=env, check=True, capture_output=True).stdout.count(b"\n")
    if tickets != count:
        raise SystemExit(f"expected {count} tickets, got {tickets}; see {workdir / 'poll.log'}")
    stages = re.search(rb"stored (\d+) in ([\d.]+) s, processed (\d+) in ([\d.]+) s", (workdir / "poll.log").read_bytes())
    if stages:
        stored, store_s, processed, process_s = (float(x) for x in stages.groups())
        print(f"  stages: fetch+store {stored / store_s:.0f} mails/s, intake processing {processed / process_s:.0f} mails/s")
    # The same command again on the mailbox it emptied: the start-up and an empty poll, what the run's
    # total holds besides fetching, storing and processing.
    again = time.perf_counter()
    subprocess.run([HELPDESK, "poll", "--once"], env=env, check=True, capture_output=True)
    print(f"  start-up (poll --once of the emptied mailbox): {time.perf_counter() - again:.2f} s")
    return count / took, took, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=1000, metavar="N")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    instance, server = start_dovecot()
    try:
        with tempfile.TemporaryDirectory(prefix="helpdesk-bench-") as tmp:
            size = fill_maildir(server, args.count)
            print(f"mailbox: {args.count} mails, {size / 1e6:.1f} MB")
            base = baseline(server, args.count)
            print(f"baseline (UID FETCH BODY.PEEK[] + mail-parser): {base:8.0f} mails/s")
            rate, took, peak = end_to_end(server, args.count, args.database_url, Path(tmp))
            print(f"helpdesk poll --once, end to end:             {rate:8.0f} mails/s ({took:.1f} s, start-up included)")
            print(f"ratio end to end / baseline: {rate / base:.2f}x (target >= 0.3x)")
            print(f"peak memory of the poller: {peak:.0f} MB (target < 200 MB at 10,000 mails)")
    finally:
        instance.close()


if __name__ == "__main__":
    main()
