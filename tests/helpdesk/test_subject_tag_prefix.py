"""HELPDESK_SUBJECT_TAG_PREFIX: the configured prefix is what acknowledgements carry and replies thread by."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.config import ConfigError, load
from tests.core.desk import Desk, mail


def test_configured_prefix_tags_the_acknowledgement_and_a_reply_with_it_threads(
    sqlite_session_factory, tmp_path: Path
) -> None:
    settings = load({"HELPDESK_DATA_DIR": str(tmp_path), "HELPDESK_SUBJECT_TAG_PREFIX": "IT-"})
    desk = Desk(sqlite_session_factory, settings)
    first = desk.deliver(mail())
    [(_, ack)] = desk.sent("acknowledgement")
    assert f"[IT-{first.ticket_id}]" in ack["Subject"] and "[#" not in ack["Subject"]

    reply = desk.deliver(mail(subject=f"Re: [IT-{first.ticket_id}] printer", body="Still jammed."))
    assert reply.ticket_id == first.ticket_id
    other = desk.deliver(mail(subject=f"Re: [#{first.ticket_id}] printer", body="Another thing."))
    assert other.ticket_id != first.ticket_id  # the default tag is no longer ours


@pytest.mark.parametrize("value", ["", "IT ", "IT]", "[IT", "T1", "x" * 21])
def test_a_prefix_that_cannot_be_found_again_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^HELPDESK_SUBJECT_TAG_PREFIX: .*got"):
        load({"HELPDESK_DATA_DIR": str(tmp_path), "HELPDESK_SUBJECT_TAG_PREFIX": value})


def test_prefix_can_be_set_in_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text('subject_tag_prefix = "HD#"\n')
    assert load({"HELPDESK_DATA_DIR": str(tmp_path), "HELPDESK_CONFIG": str(config)}).subject_tag_prefix == "HD#"
    assert load({"HELPDESK_DATA_DIR": str(tmp_path)}).subject_tag_prefix == "#"
