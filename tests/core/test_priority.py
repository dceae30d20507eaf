"""Impact x urgency -> priority, and impact/urgency read from the mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.core.mail import Address, ParsedMail
from helpdesk.core.priority import (
    ITIL_3X3,
    PriorityError,
    PriorityMatrix,
    load_matrix,
    priority_for,
    read_signals,
)
from helpdesk.core.rulebook import load_rulebook


def mail(subject: str = "", body: str = "", **headers: str) -> ParsedMail:
    return ParsedMail(
        from_=Address("user@example.org"),
        subject=subject,
        text=body,
        reply_text=body,
        headers={k.replace("_", "-").lower(): [v] for k, v in headers.items()},
    )


@pytest.mark.parametrize(
    ("impact", "urgency", "expected"),
    [(1, 1, "P1"), (1, 2, "P2"), (2, 1, "P2"), (1, 3, "P3"), (2, 2, "P3"), (3, 1, "P3"),
     (2, 3, "P4"), (3, 2, "P4"), (3, 3, "P5")],
)
def test_default_matrix_is_itil_3x3(impact: int, urgency: int, expected: str) -> None:
    assert priority_for(impact, urgency) == expected


def test_shipped_matrix_file_equals_the_builtin_default() -> None:
    assert load_matrix() == ITIL_3X3


def test_custom_matrix_changes_priority(tmp_path: Path) -> None:
    path = tmp_path / "priority.toml"
    path.write_text('matrix = [["P1", "P1"], ["P2", "P3"]]\n')
    matrix = load_matrix(path)
    assert matrix.levels == 2
    assert priority_for(1, 2, matrix) == "P1"
    assert priority_for(2, 2, matrix) == "P3"
    with pytest.raises(ValueError, match="urgency must be 1..2"):
        priority_for(1, 3, matrix)


@pytest.mark.parametrize(
    "text",
    ['matrix = [["P1", "P2"], ["P2"]]', 'matrix = [["P1", "X"], ["P2", "P3"]]', 'rows = []', "matrix = ["],
)
def test_bad_matrix_file_is_rejected_with_its_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PriorityError, match="bad.toml"):
        load_matrix(path)


def test_out_of_range_levels_are_refused() -> None:
    with pytest.raises(ValueError):
        priority_for(0, 1)
    with pytest.raises(PriorityError, match="square"):
        PriorityMatrix(rows=())


def test_silent_mail_gives_no_impact_or_urgency() -> None:
    # (classify then takes the rules' values, else the defaults)
    assert read_signals(mail("Printer", "The printer on floor 2 shows a paper jam.")) == (None, None, [])


@pytest.mark.parametrize(
    ("subject", "body", "impact"),
    [
        ("VPN", "Everyone in the office is affected.", 1),
        ("Outage", "All users get a timeout.", 1),
        ("Share", "The whole department cannot open the share.", 2),
        ("Drucker", "Die ganze Abteilung kann nicht drucken.", 2),
        ("Mail", "Niemand kann Mails senden.", 1),
    ],
)
def test_impact_from_wording(subject: str, body: str, impact: int) -> None:
    got, _, fired = read_signals(mail(subject, body))
    assert got == impact
    assert fired[0].rule == "impact-signal"


@pytest.mark.parametrize(
    ("subject", "body", "urgency"),
    [
        ("URGENT: laptop", "", 1),
        ("Laptop", "Please fix asap.", 1),
        ("Website", "The intranet is down since 9:00.", 1),
        ("Laptop", "I cannot work without it.", 1),
        ("Laptop", "I can\u2019t work at all.", 1),
        ("Dringend: Drucker", "", 1),
        ("Monitor", "Not urgent, whenever you have time.", 3),
        ("Maus", "Keine Eile.", 3),
    ],
)
def test_urgency_from_wording(subject: str, body: str, urgency: int) -> None:
    assert read_signals(mail(subject, body))[1] == urgency


def test_not_urgent_is_not_read_as_urgent() -> None:
    _, urgency, fired = read_signals(mail("New mouse", "This is not urgent."))
    assert urgency == 3
    assert fired[0].reason == "body keyword `not urgent`"


def test_urgent_needs_a_whole_word() -> None:
    assert read_signals(mail("Resurgent errors", "downloads are slow"))[1] is None


@pytest.mark.parametrize(
    ("headers", "urgency"),
    [
        ({"importance": "High"}, 1),
        ({"importance": "low"}, 3),
        ({"x_priority": "1 (Highest)"}, 1),
        ({"x_priority": "2 (High)"}, 1),
        ({"x_priority": "5 (Lowest)"}, 3),
        ({"x_priority": "3 (Normal)"}, None),
        ({"priority": "urgent"}, 1),
    ],
)
def test_urgency_from_priority_headers(headers: dict[str, str], urgency: int | None) -> None:
    assert read_signals(mail("Question", "Hello", **headers))[1] == urgency


def test_high_importance_flag_wins_over_relaxed_wording() -> None:
    _, urgency, fired = read_signals(mail("Question", "no rush", importance="high"))
    assert urgency == 1
    assert fired[0].reason == "header `importance: high`"


def test_desk_matrix_is_the_data_dir_file_else_the_shipped_one(tmp_path: Path) -> None:
    assert load_rulebook(tmp_path).matrix == ITIL_3X3
    (tmp_path / "priority.toml").write_text('matrix = [["P1", "P1", "P2"], ["P2", "P3", "P4"], ["P3", "P4", "P5"]]\n')
    assert priority_for(1, 2, load_rulebook(tmp_path).matrix) == "P1"
    other = tmp_path / "other.toml"
    other.write_text('matrix = [["P2", "P2", "P2"], ["P2", "P3", "P4"], ["P3", "P4", "P5"]]\n')
    assert priority_for(1, 1, load_rulebook(tmp_path, priority=other).matrix) == "P2"


@pytest.mark.parametrize(
    ("text", "problem"),
    [('matrix = [["P1", "P1"], ["P2", "P3"]]', "3x3"),
     ('matrix = [["P1", "P2", "P3"], ["P2", "P3", "P4"], ["P3", "P4", "P6"]]', "P1..P5")],
)
def test_desk_matrix_must_fit_the_console_and_sla_targets(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "priority.toml").write_text(text)
    with pytest.raises(PriorityError, match=rf"priority\.toml: .*{problem}"):
        load_rulebook(tmp_path)


def test_unreadable_matrix_file_is_a_priority_error(tmp_path: Path) -> None:
    path = tmp_path / "priority.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(PriorityError, match="priority.toml"):
        load_matrix(path)
