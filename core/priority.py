"""Priority from impact x urgency (ITIL), and impact/urgency read out of a mail.

Levels run from 1 (high) to N (low); the default matrix is ITIL's 3x3 giving P1..P5.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from helpdesk.core.configfile import ConfigError, read_toml, shipped
from helpdesk.core.mail import ParsedMail

if TYPE_CHECKING:
    from helpdesk.core.settings import Settings

PRIORITY_FILE = "priority.toml"


class PriorityError(ConfigError):
    """A priority matrix file that cannot be used."""


@dataclass(frozen=True)
class Fired:
    """One rule or signal that contributed to a decision, and why (shown to admins)."""

    rule: str
    reason: str
    sets: tuple[tuple[str, str], ...] = ()  # (field, value) pairs this rule decided

    def as_json(self) -> dict[str, object]:
        return {"rule": self.rule, "reason": self.reason, "sets": dict(self.sets)}


@dataclass(frozen=True)
class PriorityMatrix:
    """rows[impact - 1][urgency - 1] is the priority code."""

    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        size = len(self.rows)
        if size == 0 or any(len(row) != size for row in self.rows):
            raise PriorityError(f"priority matrix must be square, got {[len(r) for r in self.rows]}")
        for row in self.rows:
            for code in row:
                if not re.fullmatch(r"P[1-9]", code):
                    raise PriorityError(f"priority matrix: bad priority code {code!r} (want P1..P9)")

    @property
    def levels(self) -> int:
        return len(self.rows)

    def priority(self, impact: int, urgency: int) -> str:
        for name, value in (("impact", impact), ("urgency", urgency)):
            if not 1 <= value <= self.levels:
                raise ValueError(f"{name} must be 1..{self.levels}, got {value}")
        return self.rows[impact - 1][urgency - 1]


ITIL_3X3 = PriorityMatrix(
    rows=(
        ("P1", "P2", "P3"),  # impact 1: everyone / a whole service
        ("P2", "P3", "P4"),  # impact 2: a department or team
        ("P3", "P4", "P5"),  # impact 3: one person
    )
)


def priority_for(impact: int, urgency: int, matrix: PriorityMatrix | None = None) -> str:
    return (matrix or ITIL_3X3).priority(impact, urgency)


def load_matrix(path: Path | None = None) -> PriorityMatrix:
    """Load `matrix = [[...], ...]` from a TOML file; None = shipped core/data/priority.toml."""
    where = str(path) if path else "core/data/priority.toml"
    data = read_toml(path or shipped(PRIORITY_FILE), where, PriorityError)
    unknown = set(data) - {"matrix"}
    if unknown:
        raise PriorityError(f"{where}: unknown keys {sorted(unknown)}")
    rows = data.get("matrix")
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise PriorityError(f"{where}: `matrix` must be a list of rows")
    try:
        return PriorityMatrix(rows=tuple(tuple(str(c) for c in row) for row in rows))
    except PriorityError as exc:
        raise PriorityError(f"{where}: {exc}") from exc


# The console offers impact and urgency 1..3, events open tickets at 2/1 and 3/2, and SLA
# targets, reports and the console know P1..P5: the desk's matrix has to fit them.
DESK_LEVELS = 3
DESK_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")  # what the desk's tickets, forms and commands take


def load_desk_matrix(path: Path | None = None) -> PriorityMatrix:
    """A matrix file (None: the shipped one) that also fits the desk: 3x3 and P1..P5."""
    matrix = load_matrix(path)
    where = str(path or "core/data/priority.toml")
    if matrix.levels != DESK_LEVELS:
        raise PriorityError(f"{where}: the matrix must be {DESK_LEVELS}x{DESK_LEVELS} (impact and urgency 1..3), "
                            f"got {matrix.levels}x{matrix.levels}")
    unknown = sorted({code for row in matrix.rows for code in row} - set(DESK_PRIORITIES))
    if unknown:
        raise PriorityError(f"{where}: priorities must be P1..P5 (SLA targets exist for those), got {unknown}")
    return matrix


def matrix_for(settings: Settings) -> PriorityMatrix:
    """The configured matrix, loaded once at start (see core.rulebook)."""
    return settings.rulebook.matrix


# --- inference -------------------------------------------------------------------------

# (level, phrases) checked from most to least severe; phrases are whole words, case-insensitive.
# Impact: how many people are affected.
_IMPACT_SIGNALS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, ("everyone", "everybody", "all users", "all staff", "all employees", "whole company",
         "entire company", "company-wide", "nobody can", "no one can", "the whole office",
         "entire office", "all sites", "alle mitarbeiter", "alle benutzer", "alle kollegen",
         "niemand kann", "die ganze firma", "das ganze unternehmen", "firmenweit")),
    (2, ("whole department", "entire department", "whole team", "entire team", "our team",
         "our department", "several users", "several people", "multiple users", "many users",
         "several colleagues", "all of us", "ganze abteilung", "gesamte abteilung",
         "ganzes team", "mehrere kollegen", "mehrere benutzer", "mehrere mitarbeiter")),
)

# Urgency: how soon it hurts. Negated forms ("not urgent") are excluded by the patterns below.
_URGENCY_SIGNALS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, ("urgent", "urgently", "asap", "as soon as possible", "emergency", "immediately",
         "critical", "is down", "are down", "went down", "outage", "cannot work", "can't work",
         "unable to work", "can not work", "can't do any work", "production stopped",
         "dringend", "sehr dringend", "sofort", "notfall", "kann nicht arbeiten",
         "können nicht arbeiten", "ausgefallen", "komplett ausgefallen")),
    (3, ("not urgent", "no rush", "no hurry", "whenever you have time", "when you have time",
         "low priority", "nicht dringend", "keine eile", "wenn ihr zeit habt", "wenn sie zeit haben")),
)

_NEGATION = r"(?<!not )(?<!no )(?<!nicht )(?<!kein )"


def keyword_pattern(keyword: str, *, negatable: bool = False) -> re.Pattern[str]:
    """Whole-word, case-insensitive; inner whitespace matches any whitespace; a `*` at an
    end lets the word continue (German compounds). `negatable`: "not urgent" is no match."""
    word = keyword.strip()
    # The star eats the rest of the word, so a match shows the whole word ("netzwerkdrucker").
    head = r"(?<!\w)" + (_NEGATION if negatable else "") + (r"\w*" if word.startswith("*") else "")
    tail = (r"\w*" if word.endswith("*") else "") + r"(?!\w)"
    core = r"\s+".join(re.escape(w) for w in word.strip("*").split())
    if not core:
        raise ValueError(f"empty keyword {keyword!r}")
    return re.compile(head + core + tail, re.IGNORECASE)


# What a mail is about is said up front; the caps also bound the time a pathological mail
# (a 100 kB subject, a pasted log) can cost.
SUBJECT_CHARS = 1_000
BODY_CHARS = 20_000


def normalise_text(text: str) -> str:
    # Typographic apostrophes and non-breaking spaces would defeat "can't" and phrases.
    return text.replace("\u2019", "'").replace("\u00a0", " ")


@dataclass(frozen=True)
class Wording:
    """Subject and body of a mail as keywords see them: normalised, capped, plus lower-cased."""

    subject: str
    body: str
    subject_lower: str
    body_lower: str

    @classmethod
    def of(cls, mail: ParsedMail) -> Wording:
        subject = normalise_text(mail.subject[:SUBJECT_CHARS])
        body = normalise_text((mail.reply_text or mail.text)[:BODY_CHARS])
        return cls(subject, body, subject.lower(), body.lower())

    def lowered(self, where: str = "text") -> str:
        """All lower-cased text of ``where`` in one string: one `in` test rules a keyword out."""
        if where == "subject":
            return self.subject_lower
        if where == "body":
            return self.body_lower
        return self._text_lower

    @functools.cached_property
    def _text_lower(self) -> str:
        return f"{self.subject_lower}\n{self.body_lower}"  # literals hold no whitespace: no match across

    def parts(self, where: str = "text") -> tuple[tuple[str, str, str], ...]:
        """(name, text, lower-cased text) for "subject", "body" or "text" (both)."""
        subject = ("subject", self.subject, self.subject_lower)
        body = ("body", self.body, self.body_lower)
        return {"subject": (subject,), "body": (body,)}.get(where, (subject, body))


@dataclass(frozen=True)
class Keyword:
    text: str
    negatable: bool
    literal: str  # longest word, lower-cased: a cheap `in` test rules most keywords out first

    @classmethod
    def of(cls, keyword: str, *, negatable: bool = False) -> Keyword:
        words = keyword.strip().strip("*").split()
        if not words:
            raise ValueError(f"empty keyword {keyword!r}")
        return cls(keyword, negatable, max((w.lower() for w in words), key=len))

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        # Compiled when a mail first holds the literal: the rules' ~650 keywords cost every process
        # ~0.07 s at start otherwise (a `helpdesk` command, a test), most of them never needed.
        return keyword_pattern(self.text, negatable=self.negatable)

    def find(self, wording: Wording, where: str = "text") -> tuple[str, str] | None:
        """(part, matched text) of the first match, or None."""
        for part, text, lower in wording.parts(where):
            if self.literal in lower:
                found = self.pattern.search(text)
                if found:
                    return part, found.group(0)
        return None


def _compile(signals: tuple[tuple[int, tuple[str, ...]], ...]) -> tuple[tuple[int, tuple[Keyword, ...]], ...]:
    return tuple(
        (level, tuple(Keyword.of(p, negatable=level == 1) for p in phrases)) for level, phrases in signals
    )


_IMPACT = _compile(_IMPACT_SIGNALS)
_URGENCY = _compile(_URGENCY_SIGNALS)

# Mail client priority headers -> urgency.
_IMPORTANCE = {"high": 1, "urgent": 1, "low": 3, "non-urgent": 3}
_X_PRIORITY = {"1": 1, "2": 1, "4": 3, "5": 3}


def _find(compiled: tuple[tuple[int, tuple[Keyword, ...]], ...], wording: Wording) -> tuple[int, str] | None:
    text = wording.lowered()
    for level, keywords in compiled:
        for keyword in keywords:
            found = keyword.literal in text and keyword.find(wording)
            if found:
                return level, f"{found[0]} keyword `{keyword.text}`"
    return None


def _header_urgency(mail: ParsedMail) -> tuple[int, str] | None:
    for name in ("importance", "priority", "x-msmail-priority"):
        value = (mail.header(name) or "").strip().lower()
        if value in _IMPORTANCE:
            return _IMPORTANCE[value], f"header `{name}: {value}`"
    raw = (mail.header("x-priority") or "").strip()
    if raw[:1] in _X_PRIORITY:
        return _X_PRIORITY[raw[:1]], f"header `x-priority: {raw}`"
    return None


def read_signals(mail: ParsedMail) -> tuple[int | None, int | None, list[Fired]]:
    """Impact and urgency the mail itself states, None where it says nothing."""
    wording = Wording.of(mail)
    fired: list[Fired] = []
    impact = urgency = None
    found = _find(_IMPACT, wording)
    if found:
        impact = found[0]
        fired.append(Fired("impact-signal", found[1], (("impact", str(impact)),)))
    found = _find(_URGENCY, wording)
    header = _header_urgency(mail)
    # Words in the mail beat the client's priority flag, except that a "high" flag
    # is never lowered by a missing word.
    if header and (found is None or header[0] < found[0]):
        found = header
    if found:
        urgency = found[0]
        fired.append(Fired("urgency-signal", found[1], (("urgency", str(urgency)),)))
    return impact, urgency, fired
