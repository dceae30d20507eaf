"""Benchmark: how soon a mail APPENDed while the watcher idles is a ticket.

    python bench/latency.py [--mails 50] [--gap 0.3]

Starts a throwaway Dovecot and the real ``helpdesk poll`` (IDLE) on a fresh SQLite database,
APPENDs the mails one by one with a pause between them, and measures from the end of each APPEND
until intake has recorded the ticket. Prints p50/p95/max (target: p95 within 1 s).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, select

from inbound import HELPDESK, helpdesk_env, make_mail, start_dovecot
from helpdesk.core.models import Inbound, MailboxCursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between mails (the watcher goes back to IDLE)")
    args = parser.parse_args()
    instance, server = start_dovecot()
    proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="helpdesk-latency-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'helpdesk.sqlite3'}"
            env = helpdesk_env(Path(tmp) / "data", url, server)
            subprocess.run([HELPDESK, "init"], env=env, check=True, capture_output=True)
            engine = create_engine(url)
            log = (Path(tmp) / "poll.log").open("wb")
            proc = subprocess.Popen([HELPDESK, "poll"], env=env, stdout=log, stderr=subprocess.STDOUT)
            _wait(lambda: _scalar(engine, select(MailboxCursor.lease_holder)) is not None, 30)
            time.sleep(1.0)  # connected and idling
            latencies = []
            with server.client() as conn:
                for n in range(args.mails):
                    raw = make_mail(n)
                    conn.append("INBOX", raw)
                    appended = time.perf_counter()
                    mid = f"mail-{n}@client.example.com"
                    query = select(Inbound.ticket_id).where(Inbound.message_id == mid)
                    _wait(lambda: _scalar(engine, query) is not None, 30, step=0.005)
                    latencies.append(time.perf_counter() - appended)
                    time.sleep(args.gap)
            engine.dispose()
            latencies.sort()
            p95 = latencies[max(0, int(round(0.95 * len(latencies))) - 1)]
            print(
                f"{len(latencies)} mails APPENDed while idling -> ticket: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms (target p95 <= 1000 ms)"
            )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        instance.close()


def _scalar(engine, query):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.scalar(query)


def _wait(check, timeout: float, step: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: gave up after {timeout} s")
        time.sleep(step)


if __name__ == "__main__":
    main()
