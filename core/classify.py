"""Classification as data: ordered rules from a TOML file turn a mail into kind, category,
catalogue item, impact, urgency, priority and group, and record why.

How rules combine: rules are tried by `order` (then file position). A rule fires when
all of its conditions hold (within one condition, any listed value). Each outcome field is
decided by the first fired rule that sets it; a rule's catalogue item travels with its
category. Words in the mail ("everyone", "urgent") and priority headers then override
impact/urgency. Keywords are whole words: `pass` does not match `password`; a `*` at
either end of a keyword lets the word go on (`passwort*` matches `Passwortänderung`).
"""

from __future__ import annotations

import enum
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpdesk.core.configfile import ConfigError, parse_toml, read_toml, shipped
from helpdesk.core.mail import ParsedMail
from helpdesk.core.priority import Fired, Keyword, PriorityMatrix, Wording, priority_for, read_signals

__all__ = [
    "ClassKind",
    "Classification",
    "Condition",
    "Fired",
    "Outcome",
    "Rule",
    "RuleError",
    "RuleSet",
    "classify",
    "load_rules",
]


class RuleError(ConfigError):
    """A rules file that cannot be used; the message names the file and the rule."""


class ClassKind(enum.Enum):
    INCIDENT = "incident"
    SERVICE_REQUEST = "service_request"
    ACCESS_REQUEST = "access_request"
    EVENT = "event"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True)
class Classification:
    kind: ClassKind
    category: str
    catalogue_item: str | None
    impact: int
    urgency: int
    priority: str
    group: str | None
    fired: tuple[Fired, ...]

    def explain(self) -> str:
        """E.g. "service request / password reset: rule `password-reset`, subject keyword `password`"."""
        what = (self.catalogue_item or self.category).replace("-", " ")
        why = "; ".join(f"rule `{f.rule}`, {f.reason}" for f in self.fired)
        return f"{self.kind.label} / {what}: {why}"

    def as_json(self) -> list[dict[str, object]]:
        return [f.as_json() for f in self.fired]


# --- conditions ----------------------------------------------------------------------------

_TEXT_FIELDS = ("subject", "body", "text")  # text = subject or body
_CONDITION_KEYS = frozenset(
    {*(_TEXT_FIELDS), *(f"{f}_regex" for f in _TEXT_FIELDS), "sender", "sender_domain", "recipient", "header"}
)
_OUTCOME_KEYS = frozenset({"kind", "category", "catalogue_item", "impact", "urgency", "group"})
_RULE_KEYS = frozenset({"name", "description", "order", "when", "unless", "then"})
_TOP_KEYS = frozenset({"defaults", "rule"})



@dataclass(frozen=True)
class _Facts:
    """The parts of a mail conditions look at, normalised once."""

    wording: Wording
    sender: str
    recipients: tuple[str, ...]
    headers: dict[str, list[str]]

    @classmethod
    def of(cls, mail: ParsedMail, recipient: str | None) -> _Facts:
        recipients = [a.address for a in (*mail.to, *mail.cc) if a.address]
        if recipient:
            recipients.insert(0, recipient.lower())
        return cls(Wording.of(mail), mail.sender.lower(), tuple(recipients), mail.headers)


@dataclass(frozen=True)
class Condition:
    """One key of a rule's `when`/`unless` table; matches if any of its values does."""

    key: str
    values: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...] = ()  # *_regex and header conditions
    keywords: tuple[Keyword, ...] = ()  # subject/body/text conditions
    header: str | None = None  # for key == "header"

    def check(self, facts: _Facts) -> str | None:
        """The reason it matched, or None."""
        if self.keywords:
            return self._keyword(facts.wording)
        if self.key.endswith("_regex"):
            return self._regex(facts.wording)
        if self.key == "sender":
            hit = any(fnmatch.fnmatchcase(facts.sender, v.lower()) for v in self.values)
            return f"sender `{facts.sender}`" if hit else None
        if self.key == "sender_domain":
            domain = facts.sender.rpartition("@")[2]
            for value in self.values:
                v = value.lower().lstrip("@")
                if domain == v or domain.endswith("." + v):
                    return f"sender domain `{v}`"
            return None
        if self.key == "recipient":
            for address in facts.recipients:
                if any(fnmatch.fnmatchcase(address, v.lower()) for v in self.values):
                    return f"recipient `{address}`"
            return None
        return self._header(facts.headers)

    def _keyword(self, wording: Wording) -> str | None:
        text = wording.lowered(self.key)
        for keyword in self.keywords:
            found = keyword.literal in text and keyword.find(wording, self.key)
            if found:
                part, matched = found
                # For "passwort*" show the word that matched ("passwortänderung").
                shown = matched.lower() if "*" in keyword.text else keyword.text
                return f"{part} keyword `{shown}`"
        return None

    def _regex(self, wording: Wording) -> str | None:
        for value, pattern in zip(self.values, self.patterns, strict=True):
            for part, text, _ in wording.parts(self.key.removesuffix("_regex")):
                if pattern.search(text):
                    return f"{part} regex `{value}`"
        return None

    def _header(self, headers: dict[str, list[str]]) -> str | None:
        for got in headers.get(self.header or "", []):
            for value, pattern in zip(self.values, self.patterns, strict=True):
                if pattern.search(got):
                    return f"header `{self.header}` matches `{value}`"
        return None


@dataclass(frozen=True)
class Outcome:
    kind: ClassKind | None = None
    category: str | None = None
    catalogue_item: str | None = None
    impact: int | None = None
    urgency: int | None = None
    group: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    order: int
    when: tuple[Condition, ...]
    unless: tuple[Condition, ...]
    then: Outcome

    def check(self, mail: _Facts) -> str | None:
        reasons = []
        for condition in self.when:
            reason = condition.check(mail)
            if reason is None:
                return None
            reasons.append(reason)
        if any(c.check(mail) is not None for c in self.unless):
            return None
        return " and ".join(reasons)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]  # sorted by order
    defaults: Outcome
    source: str = "core/data/rules.toml"
    matrix: PriorityMatrix | None = None  # None: ITIL 3x3

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)


# --- loading and validation ------------------------------------------------------------------


def load_rules(path: Path | None = None, *, matrix: PriorityMatrix | None = None) -> RuleSet:
    """Load and validate a rules file; None = the shipped defaults."""
    where = str(path) if path else "core/data/rules.toml"
    return rules_from(read_toml(path or shipped("rules.toml"), where, RuleError), source=where, matrix=matrix)


def parse_rules(text: str, *, source: str = "<rules>", matrix: PriorityMatrix | None = None) -> RuleSet:
    return rules_from(parse_toml(text, source, RuleError), source=source, matrix=matrix)


def rules_from(data: dict[str, Any], *, source: str, matrix: PriorityMatrix | None = None) -> RuleSet:
    """Validate the tables of a rules file into typed rules; errors name `source` and the rule."""
    _no_unknown(data, _TOP_KEYS, f"{source}: top level")
    levels = matrix.levels if matrix else 3
    defaults = _outcome(data.get("defaults", {}), f"{source}: [defaults]", levels)
    if defaults.kind is None or defaults.category is None:
        raise RuleError(f"{source}: [defaults] must set kind and category")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise RuleError(f"{source}: `rule` must be an array of tables ([[rule]])")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, f"{source}: rule #{index + 1}", levels, source)
        if rule.name in seen:
            raise RuleError(f"{source}: rule `{rule.name}`: duplicate name")
        seen.add(rule.name)
        rules.append(rule)
    rules.sort(key=lambda r: r.order)  # stable: file position breaks ties
    return RuleSet(rules=tuple(rules), defaults=defaults, source=source, matrix=matrix)


def _no_unknown(table: dict[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")


def _rule(raw: Any, where: str, levels: int, source: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise RuleError(f"{where}: `name` must be a lower-case slug like `password-reset`, got {name!r}")
    where = f"{source}: rule `{name}`"
    _no_unknown(raw, _RULE_KEYS, where)
    order = raw.get("order", 1000)
    if not isinstance(order, int) or isinstance(order, bool):
        raise RuleError(f"{where}: `order` must be an integer")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"{where}: `description` must be a string")
    when = _conditions(raw.get("when"), f"{where} [when]")
    if not when:
        raise RuleError(f"{where}: needs at least one condition in [rule.when]")
    unless = _conditions(raw.get("unless", {}), f"{where} [unless]")
    then = _outcome(raw.get("then"), f"{where} [then]", levels)
    if then == Outcome():
        raise RuleError(f"{where}: [rule.then] sets nothing")
    if then.catalogue_item and not then.category:
        raise RuleError(f"{where}: a catalogue_item needs a category in the same rule")
    return Rule(name=name, description=description, order=order, when=when, unless=unless, then=then)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where}: must be a non-empty string or list of non-empty strings")
    return tuple(value)


def _regex(value: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise RuleError(f"{where}: bad regex {value!r}: {exc}") from exc


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    """A table, or an array of tables ([[rule.when]]) when one key is needed twice; all hold."""
    if raw is None:
        return ()
    if isinstance(raw, list):
        return tuple(c for i, table in enumerate(raw) for c in _conditions(table, f"{where} #{i + 1}"))
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be a table or an array of tables")
    _no_unknown(raw, _CONDITION_KEYS, where)
    out: list[Condition] = []
    for key, value in raw.items():
        if key == "header":
            if not isinstance(value, dict) or not value:
                raise RuleError(f"{where}: `header` must be a table of header name = regex(es)")
            for header, regexes in value.items():
                values = _strings(regexes, f"{where} header `{header}`")
                patterns = tuple(_regex(v, f"{where} header `{header}`") for v in values)
                out.append(Condition("header", values, patterns=patterns, header=header.lower()))
            continue
        values = _strings(value, f"{where} `{key}`")
        if key.endswith("_regex"):
            out.append(Condition(key, values, patterns=tuple(_regex(v, f"{where} `{key}`") for v in values)))
        elif key in _TEXT_FIELDS:
            try:
                out.append(Condition(key, values, keywords=tuple(Keyword.of(v) for v in values)))
            except ValueError as exc:
                raise RuleError(f"{where} `{key}`: {exc}") from exc
        else:
            out.append(Condition(key, values))
    return tuple(out)


def _outcome(raw: Any, where: str, levels: int) -> Outcome:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be a table")
    _no_unknown(raw, _OUTCOME_KEYS, where)
    kind = raw.get("kind")
    if kind is not None:
        try:
            kind = ClassKind(kind)
        except ValueError:
            choices = ", ".join(k.value for k in ClassKind)
            raise RuleError(f"{where}: bad kind {kind!r} (one of {choices})") from None
    for key in ("impact", "urgency"):
        level = raw.get(key)
        if level is not None and (not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= levels):
            raise RuleError(f"{where}: `{key}` must be an integer 1..{levels}, got {level!r}")
    for key in ("category", "catalogue_item", "group"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise RuleError(f"{where}: `{key}` must be a non-empty string")
    return Outcome(
        kind=kind,
        category=raw.get("category"),
        catalogue_item=raw.get("catalogue_item"),
        impact=raw.get("impact"),
        urgency=raw.get("urgency"),
        group=raw.get("group"),
    )


# --- classifying ------------------------------------------------------------------------


@dataclass
class _Decision:
    values: dict[str, Any] = field(default_factory=dict)
    fired: list[Fired] = field(default_factory=list)

    def take(self, rule: Rule, reason: str) -> None:
        then = rule.then
        offered: dict[str, Any] = {
            "kind": then.kind,
            "impact": then.impact,
            "urgency": then.urgency,
            "group": then.group,
        }
        if then.category is not None and "category" not in self.values:
            offered["category"] = then.category
            offered["catalogue_item"] = then.catalogue_item
        sets = {k: v for k, v in offered.items() if k not in self.values and (v is not None or k == "catalogue_item")}
        if not sets:
            return  # fired, but everything it would decide was already decided
        self.values.update(sets)
        shown = tuple(
            (k, v.value if isinstance(v, enum.Enum) else str(v)) for k, v in sets.items() if v is not None
        )
        self.fired.append(Fired(rule.name, reason, shown))


def classify(
    mail: ParsedMail, rules: RuleSet, *, recipient: str | None = None
) -> Classification:
    """Kind, category, priority ... for a new ticket, with the rules that decided them."""
    facts = _Facts.of(mail, recipient)
    decision = _Decision()
    for rule in rules.rules:
        reason = rule.check(facts)
        if reason is not None:
            decision.take(rule, reason)
    if not decision.fired:
        decision.fired.append(Fired("default", "no rule matched"))
    d = rules.defaults
    values = decision.values
    kind: ClassKind = values.get("kind") or d.kind or ClassKind.INCIDENT
    category: str = values.get("category") or d.category or "general"
    item: str | None = values.get("catalogue_item")
    if kind not in (ClassKind.SERVICE_REQUEST, ClassKind.ACCESS_REQUEST):
        item = None  # catalogue items are for requests only
    impact, urgency, signals = read_signals(mail)
    decision.fired.extend(signals)
    impact = impact or values.get("impact") or d.impact or 3
    urgency = urgency or values.get("urgency") or d.urgency or 3
    levels = rules.matrix.levels if rules.matrix else 3
    impact, urgency = min(impact, levels), min(urgency, levels)
    return Classification(
        kind=kind,
        category=category,
        catalogue_item=item,
        impact=impact,
        urgency=urgency,
        priority=priority_for(impact, urgency, rules.matrix),
        group=values.get("group") or d.group,
        fired=tuple(decision.fired),
    )
