"""Benchmark: processing stored mail on PostgreSQL with 1 process, then 2 at once, in the same run.

    python bench/processes.py N [--postgres-url URL] [--processes 2]

For each measurement, a fresh database is filled with N realistic mails (plain, HTML, attachments,
replies, non-ASCII: bench/inbound.py's) stored but not processed, as `helpdesk ingest` or a poller
leaves them when processing is behind. Then `helpdesk process --once` runs, once alone and then as
two processes started together, until every mail is processed. Prints mails/s for each, the
ratio (target: 2 processes >= 1.6x one on a 2-core machine), the load average, and how often the
workers were seen waiting for a lock (pg_stat_activity, sampled every 50 ms) and on which one.
Each run's audit chain is verified and its tickets counted afterwards.

PostgreSQL: the server at --postgres-url (its maintenance database; a database is made and dropped
per measurement), or a throwaway cluster started here (tests/servers/postgres.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from inbound import HELPDESK, helpdesk_env, make_mail  # (puts the repository on the path)
from sqlalchemy.engine import make_url

from bench.web import postgres_server  # (a top-level `web` is the console package)
from helpdesk.core.locks import WRITES, _key  # to name the writers' lock in the lock samples


def fresh_database(server: str, name: str) -> str:
    with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.execute(f'CREATE DATABASE "{name}"')
    return make_url(server).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(env: dict[str, str], count: int) -> int:
    """Store ``count`` mails without processing them, as intake's store step does; returns bytes."""
    subprocess.run([HELPDESK, "init"], env=env, check=True, capture_output=True)
    # In this process, with the environment the commands get: the same settings, secret and database.
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        from helpdesk.config import load
        from helpdesk.core.db import transaction
        from helpdesk.wiring import build

        app = build(load())
        total = 0
        for start in range(0, count, 200):
            mails = [(n + 1, make_mail(n)) for n in range(start, min(start + 200, count))]
            total += sum(len(raw) for _, raw in mails)
            with transaction(app.factory) as session:
                app.intake.store_many(session, mails, source="bench", uidvalidity=1)
        app.engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return total


class LockSampler(threading.Thread):
    """Counts, every 50 ms, the database's sessions at work and those waiting for a lock (and which)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.stop = threading.Event()
        self.samples = 0
        self.busy = 0  # sessions running a statement or idle in a transaction, summed over samples
        self.waiting: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        names = {_key(WRITES): f"advisory {WRITES}"}
        with psycopg.connect(self.url, autocommit=True) as pg:
            while not self.stop.wait(0.05):
                rows = pg.execute(
                    "SELECT a.state, a.wait_event_type, l.locktype, l.classid::bigint << 32 | l.objid::bigint,"
                    " l.relation::regclass::text"
                    " FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted"
                    " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
                    " AND a.backend_type = 'client backend'"
                ).fetchall()
                self.samples += 1
                for state, wait_type, locktype, key, relation in rows:
                    if state in ("active", "idle in transaction"):
                        self.busy += 1
                    if wait_type == "Lock" and locktype is not None:  # (None: granted meanwhile)
                        if locktype == "advisory":
                            what = names.get(key, "advisory (per Message-ID)")
                        else:
                            what = f"{locktype} {relation or ''}".strip()
                        self.waiting[what] += 1


def server_cpu(url: str) -> float | None:
    """CPU seconds the PostgreSQL server used so far (its processes, and its ended backends), if it runs here."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as pg:
        backend = pg.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    try:
        postmaster = int(Path(f"/proc/{backend}/stat").read_text().rpartition(")")[2].split()[1])
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            if pid == postmaster:  # its own time and that of the backends it has reaped
                total += sum(int(f) for f in fields[11:15])
            elif int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    processes: int
    size: int
    took: float  # wall seconds, start-up included
    busy: float  # the longest of the processes' own processing times
    shares: list[int]
    statuses: dict[str, int]
    tickets: int
    audit: str
    load: float
    load_after: float
    helpdesk_cpu: float
    server_cpu: float | None
    sampler: LockSampler


def measure(server: str, count: int, processes: int, workdir: Path) -> Run:
    name = f"helpdesk_bench_processes_{os.getpid()}_{processes}"
    url = fresh_database(server, name)
    env = helpdesk_env(workdir / f"data-{processes}", url)
    try:
        size = fill(env, count)
        sampler = LockSampler(url)
        sampler.start()
        load_before = os.getloadavg()[0]
        server_before = server_cpu(url)
        started = time.perf_counter()
        logs = [workdir / f"process-{processes}-{n}.log" for n in range(processes)]
        procs = []
        for log in logs:
            with log.open("wb") as out:
                procs.append(subprocess.Popen([HELPDESK, "process", "--once"], env=env, stdout=out, stderr=subprocess.STDOUT))
        cpu = 0.0
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
        took = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        server_after = server_cpu(url)
        outputs = [log.read_bytes() for log in logs]
        for proc, out in zip(procs, outputs, strict=True):
            if proc.returncode != 0:
                raise SystemExit(f"helpdesk process --once exited {proc.returncode}:\n{out.decode()[-3000:]}")
        # Each prints "processed K stored mails in S s (status K, ...)": its share and its processing time.
        shares = [re.search(rb"processed (\d+) stored mails in ([\d.]+) s(?: \((.*)\))?", out) for out in outputs]
        if not all(shares):
            raise SystemExit(f"unexpected output: {[out.decode()[-3000:] for out in outputs]}")
        found = [m for m in shares if m]
        statuses: collections.Counter[str] = collections.Counter()
        for m in found:
            for part in (m.group(3) or b"").decode().split(", "):
                status, _, n = part.rpartition(" ")
                statuses[status] += int(n)
        done = [int(m.group(1)) for m in found]
        if sum(done) != count:
            raise SystemExit(f"processed {sum(done)} of {count} mails: {done}")
        if statuses.get("quarantined"):
            listing = subprocess.run([HELPDESK, "quarantine", "list"], env=env, capture_output=True, text=True)
            print(f"  quarantined with {processes} processes:\n{listing.stdout}{listing.stderr}", flush=True)
            for out in outputs:
                errors = [line for line in out.decode().splitlines() if "ERROR" in line or "Error" in line]
                print("\n".join(errors[:10]), flush=True)
        audit = subprocess.run([HELPDESK, "audit", "verify"], env=env, capture_output=True, text=True)
        if audit.returncode != 0:
            raise SystemExit(f"the audit chain does not verify after {processes} processes: {audit.stdout}{audit.stderr}")
        tickets = subprocess.run([HELPDESK, "tickets"], env=env, check=True, capture_output=True).stdout.count(b"\n")
        return Run(
            processes=processes, size=size, took=took, busy=max(float(m.group(2)) for m in found), shares=done,
            statuses=dict(statuses), tickets=tickets, audit=audit.stdout.strip(), load=load_before,
            load_after=os.getloadavg()[0], helpdesk_cpu=cpu,
            server_cpu=None if server_before is None or server_after is None else server_after - server_before,
            sampler=sampler,
        )
    finally:
        drop_database(server, name)


def report(run: Run, count: int) -> None:
    plural = "es" if run.processes > 1 else ""
    print(f"{run.processes} process{plural}: {count} mails ({run.size / 1e6:.1f} MB) in {run.took:.1f} s ="
          f" {count / run.took:.1f} mails/s start-up included, {count / run.busy:.1f} mails/s processing alone"
          f" (load average {run.load:.1f} -> {run.load_after:.1f})", flush=True)
    print(f"  shares {run.shares}, {run.statuses}, {run.tickets} tickets; {run.audit}")
    server = f", PostgreSQL {run.server_cpu / count * 1000:.1f} ms" if run.server_cpu is not None else ""
    used = (run.helpdesk_cpu + (run.server_cpu or 0)) / run.took
    print(f"  CPU per mail: helpdesk {run.helpdesk_cpu / count * 1000:.1f} ms{server}; {used:.2f} of"
          f" {os.cpu_count()} cores used on average")
    sampler = run.sampler
    if sampler.samples:
        waits = ", ".join(f"{what} {n / sampler.samples:.2f}" for what, n in sampler.waiting.most_common()) or "none"
        print(f"  pg_stat_activity every 50 ms ({sampler.samples} samples): {sampler.busy / sampler.samples:.2f}"
              f" sessions at work on average; waiting for a lock: {waits}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=1000, metavar="N")
    parser.add_argument("--processes", type=int, default=2, help="the processes of the second measurement (default 2)")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's maintenance database (default: a throwaway cluster)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    with postgres_server(args.postgres_url) as server, tempfile.TemporaryDirectory(prefix="helpdesk-bench-") as tmp:
        one = measure(server, args.count, 1, Path(tmp))
        report(one, args.count)
        many = measure(server, args.count, args.processes, Path(tmp))
        report(many, args.count)
    print(f"ratio {args.processes} processes / 1: {one.took / many.took:.2f}x start-up included,"
          f" {one.busy / many.busy:.2f}x processing alone (target >= 1.6x with 2 processes on 2 cores);"
          f" load average now {os.getloadavg()[0]:.1f}")
    cpu_one = one.helpdesk_cpu + (one.server_cpu or 0)
    cpu_many = many.helpdesk_cpu + (many.server_cpu or 0)
    print(f"CPU per mail {cpu_many / args.count * 1000:.1f} ms with {args.processes} against {cpu_one / args.count * 1000:.1f} ms"
          " with 1: the same work; a ratio short of the target with the cores not all used is waiting,"
          " with them all used it is the machine")


if __name__ == "__main__":
    main()
