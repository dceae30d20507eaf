"""Loop guard measured on real-world mail (the shared corpus); figures are printed (`-s` not needed).

Labels: sisimai's expected reasons (`vacation`, `feedback`, `delivered` are no bounces),
bounce_email's is_bounce, php-bounce-handler's and flanker's collector labels.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpdesk.core.loopguard import Verdicts, bounced_message_ids, failed_recipients, judge
from helpdesk.core.mail import ParsedMail
from helpdesk.mailgateway.parse import UnreadableMail, parse_message

NOT_BOUNCE_REASONS = {"vacation", "feedback", "delivered"}


@dataclass
class Judged:
    path: Path
    mail: ParsedMail | None
    verdicts: Verdicts

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Tally:
    """How many of `total` files a check got right, and which it missed."""

    label: str
    hits: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.hits + len(self.misses)

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def add(self, ok: bool, name: str) -> None:
        if ok:
            self.hits += 1
        else:
            self.misses.append(name)

    def line(self) -> str:
        shown = ", ".join(self.misses[:8]) + (" ..." if len(self.misses) > 8 else "")
        return f"{self.label}: {self.hits}/{self.total} = {self.rate:.1%}" + (f"  [not: {shown}]" if shown else "")


def judge_file(path: Path) -> Judged:
    try:
        mail = parse_message(path.read_bytes())
    except UnreadableMail:
        return Judged(path, None, Verdicts(reasons=("unreadable",)))
    return Judged(path, mail, judge(mail, own_addresses=["help@example.org"]))


def judge_all(paths: Iterable[Path]) -> list[Judged]:
    return [judge_file(p) for p in sorted(paths)]


@pytest.fixture(scope="module")
def sisimai(corpus_dir: Path) -> Path:
    return corpus_dir / "sisimai-set-of-emails"


@pytest.fixture(scope="module")
def sisimai_expected(sisimai: Path) -> dict[str, set[str]]:
    """File name in maildir/bsd -> the reasons go-sisimai expects for its recipients."""
    data = json.loads((sisimai / "expected-go-sisimai.json").read_text())
    return {name: {fact["reason"] for fact in entry["facts"]} for name, entry in data["expected"].items()}


@pytest.fixture(scope="module")
def sisimai_bounces(sisimai: Path, sisimai_expected: dict[str, set[str]]) -> list[Judged]:
    names = [n for n, reasons in sisimai_expected.items() if not reasons & NOT_BOUNCE_REASONS]
    return judge_all(p for n in names if (p := sisimai / "maildir" / "bsd" / n).exists())


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n\nloop guard on the corpus:\n  " + "\n  ".join(lines))


def _problem(v: Verdicts) -> bool:
    """A delivery problem report: a bounce, or a delay (sisimai and bounce_email count delays as soft bounces)."""
    return v.bounce or v.delay


def test_bounce_recall_on_sisimai_bsd(sisimai_bounces: list[Judged], report: list[str]) -> None:
    tally = Tally("bounce or delay recall, sisimai maildir/bsd (without vacation/feedback/delivered)")
    for judged in sisimai_bounces:
        tally.add(_problem(judged.verdicts), judged.name)
    report.append(tally.line() + f" (delays: {sum(j.verdicts.delay for j in sisimai_bounces)})")
    assert tally.total > 500
    assert tally.rate >= 0.95, tally.line()


def test_bounce_recall_on_sisimai_line_ending_copies(sisimai: Path, report: list[str]) -> None:
    """The CRLF (dos), CR-only (mac) and malformed (err, tmp) copies: bounces all but arf/rfc3834."""
    maildir = sisimai / "maildir"
    paths = [p for d in ("dos", "mac", "err", "tmp") for p in (maildir / d).iterdir()]
    tally = Tally("bounce or delay recall, sisimai maildir/dos+mac+err+tmp")
    for judged in judge_all(p for p in paths if not p.name.startswith(("arf-", "rfc3834-"))):
        tally.add(_problem(judged.verdicts), f"{judged.path.parent.name}/{judged.name}")
    report.append(tally.line())
    assert tally.total > 150
    assert tally.rate >= 0.95, tally.line()


def test_false_bounces_on_non_bounces(corpus_dir: Path, sisimai: Path, report: list[str]) -> None:
    paths = [*(sisimai / "maildir" / "not").iterdir(), *(corpus_dir / "bounce_email" / "non_bounces").iterdir()]
    judged = judge_all(paths)
    false = [j.name for j in judged if j.verdicts.bounce]
    rate = len(false) / len(judged)
    report.append(f"false bounces, sisimai maildir/not + bounce_email non_bounces: {len(false)}/{len(judged)} = {rate:.1%}")
    assert len(judged) >= 6
    assert rate <= 0.02, false


def _vacation_paths(corpus_dir: Path, sisimai: Path, expected: dict[str, set[str]]) -> list[Path]:
    """sisimai's RFC 3834 samples (and their CRLF/CR copies) and bounce_email's two auto-replies."""
    maildir = sisimai / "maildir"
    paths = [maildir / "bsd" / n for n, reasons in expected.items() if reasons == {"vacation"}]
    paths += [p for folder in ("bsd", "dos", "mac") for p in (maildir / folder).glob("rfc3834-*.eml")]
    non_bounces = corpus_dir / "bounce_email" / "non_bounces"
    paths += [non_bounces / "tt_1234210666.txt", non_bounces / "tt_1234211024.txt"]  # Exchange OOF, Gmail vacation
    return sorted({p for p in paths if p.exists()})


def test_auto_reply_recall_on_vacation_samples(
    corpus_dir: Path, sisimai: Path, sisimai_expected: dict[str, set[str]], report: list[str]
) -> None:
    tally = Tally("auto-reply recall, vacation samples")
    for judged in judge_all(_vacation_paths(corpus_dir, sisimai, sisimai_expected)):
        tally.add(judged.verdicts.auto_reply and not judged.verdicts.bounce, f"{judged.path.parent.name}/{judged.name}")
    report.append(tally.line())
    assert tally.total >= 8
    assert tally.rate >= 0.95, tally.line()


def test_feedback_reports_on_sisimai_arf(
    sisimai: Path, sisimai_expected: dict[str, set[str]], report: list[str]
) -> None:
    names = [n for n, reasons in sisimai_expected.items() if reasons == {"feedback"}]
    tally = Tally("feedback reports, sisimai (reason feedback)")
    for judged in judge_all(sisimai / "maildir" / "bsd" / n for n in names):
        tally.add(judged.verdicts.feedback_report and not judged.verdicts.bounce, judged.name)
    report.append(tally.line())
    # arf-26 is Apple Mail's unsubscribe request, labelled feedback upstream; it is an auto-reply here.
    assert tally.rate >= 0.9, tally.line()


def test_bounce_email_labels(corpus_dir: Path, report: list[str]) -> None:
    root = corpus_dir / "bounce_email"
    expected = json.loads((root / "expected.json").read_text())["expected"]
    tally = Tally("bounce_email is_bounce agreement")
    originals = Tally("bounce_email original Message-ID recovered (has_original_message)")
    for name, labels in expected.items():
        judged = judge_file(root / name)
        tally.add(_problem(judged.verdicts) == labels["is_bounce"], name)
        if labels.get("has_original_message") and judged.mail is not None:
            originals.add(bool(bounced_message_ids(judged.mail)), name)
    report += [tally.line(), originals.line()]
    assert tally.rate >= 0.95, tally.line()
    assert originals.rate >= 0.9, originals.line()


def test_php_bounce_handler_labels(corpus_dir: Path, report: list[str]) -> None:
    root = corpus_dir / "php-bounce-handler"
    labels = json.loads((root / "labels.json").read_text())["labels"]
    bounces = Tally("php-bounce-handler bounces (permanent NDR)")
    complaints = Tally("php-bounce-handler feedback reports")
    for name, entry in labels.items():
        verdicts = judge_file(root / "eml" / name).verdicts
        label = entry["label"]
        if label.startswith("bounce"):
            bounces.add(verdicts.bounce, name)
        elif label.startswith("feedback-report"):
            complaints.add(verdicts.feedback_report, name)
        elif label.startswith("delay-notification"):
            assert verdicts.delay and not verdicts.bounce, name  # "transient, not a failure"
        else:
            assert not verdicts.bounce, name
    report += [bounces.line(), complaints.line()]
    assert bounces.rate >= 0.9, bounces.line()
    assert complaints.rate >= 0.8, complaints.line()


def test_flanker_labels(corpus_dir: Path, report: list[str]) -> None:
    root = corpus_dir / "flanker"
    expected = json.loads((root / "expected.json").read_text())["expected"]
    tally = Tally("flanker labels (bounce / ARF / MDN / plain)")
    for name, labels in expected.items():
        verdicts = judge_file(root / name).verdicts
        label = labels.get("label", "")
        if label.startswith("ARF"):
            ok = verdicts.feedback_report and not verdicts.bounce
        elif label.startswith("MDN"):
            ok = verdicts.delivery_notice and not verdicts.bounce
        elif "bounce" in label or label.startswith("delivery-status"):
            ok = verdicts.bounce or verdicts.delivery_notice or verdicts.delay
        else:
            ok = verdicts.bounce == labels.get("is_bounce", False)
        tally.add(ok, name)
    report.append(tally.line())
    assert tally.rate == 1.0, tally.line()


def test_failed_recipients_and_original_ids_of_sisimai_bounces(
    sisimai_bounces: list[Judged], report: list[str]
) -> None:
    """Not a contract figure: how often a bounce can flag a contact and find its ticket."""
    recipients = Tally("sisimai bounces naming a failed recipient")
    originals = Tally("sisimai bounces with an original Message-ID")
    for judged in sisimai_bounces:
        if judged.mail is None or not judged.verdicts.bounce:
            continue
        recipients.add(bool(failed_recipients(judged.mail)), judged.name)
        originals.add(bool(bounced_message_ids(judged.mail)), judged.name)
    report += [recipients.line(), originals.line()]
    # Delay reports name nobody as failed, and the anonymised samples often drop the original.
    assert recipients.rate >= 0.8, recipients.line()
    assert originals.rate >= 0.7, originals.line()


def test_no_bounces_or_auto_replies_in_ordinary_mail(corpus_dir: Path, report: list[str]) -> None:
    """People's mail from the other corpora must never be taken for a bounce, complaint or auto-reply."""
    paths = [*(corpus_dir / "talon").rglob("*.eml"), *(corpus_dir / "django-helpdesk").rglob("*.eml")]
    paths += [p for p in (corpus_dir / "notmuch" / "corpora" / "default").rglob("*") if p.is_file()]
    judged = judge_all(paths)
    wrong = [
        str(j.path.relative_to(corpus_dir))
        for j in judged
        if j.verdicts.bounce or j.verdicts.auto_reply or j.verdicts.feedback_report
    ]
    report.append(f"ordinary mail (talon, django-helpdesk, notmuch default) judged automatic: {len(wrong)}/{len(judged)}")
    assert len(judged) > 60
    assert wrong == []


def _delayed_only(text: str) -> bool:
    actions = {a.lower() for a in re.findall(r"^Action:[ \t]*(\w+)", text, re.MULTILINE | re.IGNORECASE)}
    return "delayed" in actions and actions <= {"delayed", "delivered", "relayed", "expanded"}


def test_every_delayed_only_dsn_in_the_corpus_is_a_delay_that_names_nobody(corpus_dir: Path, report: list[str]) -> None:
    """'Action: delayed' and no failure: still being retried. Never a bounce, never a failed recipient."""
    paths = [p for p in corpus_dir.rglob("*") if p.is_file() and p.suffix in (".eml", ".txt", "")
             and _delayed_only(p.read_bytes().decode("latin-1"))]
    tally = Tally("delayed-only DSNs judged a delay, no bounce, nobody failed")
    for judged in judge_all(paths):
        ok = judged.verdicts.delay and not judged.verdicts.bounce and not failed_recipients(judged.mail)  # type: ignore[arg-type]
        tally.add(ok, str(judged.path.relative_to(corpus_dir)))
    report.append(tally.line())
    assert tally.total >= 15
    assert tally.rate == 1.0, tally.line()
