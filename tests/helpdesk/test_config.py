"""Configuration: environment over TOML, and one clear line for every bad value."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from helpdesk.config import ConfigError, ensure_secret, load
from helpdesk.core.settings import TlsMode


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HELPDESK_DATA_DIR": str(tmp_path / "data"), **values}


def test_defaults_give_sqlite_under_the_data_dir_and_a_stable_local_secret(tmp_path: Path) -> None:
    first = load(_env(tmp_path))
    assert first.database_url == f"sqlite:///{tmp_path / 'data' / 'helpdesk.db'}"
    assert first.address == "help@example.org"
    assert first.mailboxes == () and first.smtp is None
    assert first.secret_key == "" and not (tmp_path / "data").exists()  # load() writes nothing
    made = ensure_secret(first).secret_key
    assert len(made) == 64
    assert load(_env(tmp_path)).secret_key == made == ensure_secret(load(_env(tmp_path))).secret_key


def test_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text('address = "it@corp.example"\nimap_host = "imap.corp.example"\nimap_user = "it"\nimap_tls = "ssl"\n')
    settings = load(_env(tmp_path, HELPDESK_CONFIG=str(config), HELPDESK_ADDRESS="desk@corp.example"))
    assert settings.address == "desk@corp.example"
    [mailbox] = settings.mailboxes
    assert (mailbox.host, mailbox.port, mailbox.tls) == ("imap.corp.example", 993, TlsMode.SSL)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"HELPDESK_IMAP_HOST": "x", "HELPDESK_IMAP_USER": "u", "HELPDESK_IMAP_TLS": "tls1.3"}, "HELPDESK_IMAP_TLS"),
        ({"HELPDESK_IMAP_HOST": "x"}, "HELPDESK_IMAP_USER"),
        ({"HELPDESK_IMAP_HOST": "x", "HELPDESK_IMAP_USER": "u", "HELPDESK_IMAP_PORT": "seven"}, "HELPDESK_IMAP_PORT"),
        ({"HELPDESK_SMTP_HOST": "x", "HELPDESK_SMTP_PORT": "70000"}, "HELPDESK_SMTP_PORT"),
        ({"HELPDESK_ADDRESS": "not an address"}, "HELPDESK_ADDRESS"),
        ({"HELPDESK_WEB_PROXIES": "-1"}, "HELPDESK_WEB_PROXIES"),
        ({"HELPDESK_DATABASE_URL": "mysql://x"}, "HELPDESK_DATABASE_URL"),
        ({"HELPDESK_POLL_INTERVAL": "-1"}, "HELPDESK_POLL_INTERVAL"),
        ({"HELPDESK_SLA_TARGETS": "P1=fast"}, "HELPDESK_SLA_TARGETS"),
        ({"HELPDESK_BUSINESS_HOURS": "mon-fri 08:00-18:00 Mars/Olympus"}, "HELPDESK_BUSINESS_HOURS"),
        ({"HELPDESK_RULES_FILE": "/nonexistent/rules.toml"}, "HELPDESK_RULES_FILE"),
        ({"HELPDESK_PRIORITY_FILE": "/nonexistent/priority.toml"}, "HELPDESK_PRIORITY_FILE"),
        ({"HELPDESK_CONFIG": "/nonexistent/helpdesk.toml"}, "HELPDESK_CONFIG"),
        ({"HELPDESK_SEARCH_LANGUAGE": "english'); DROP TABLE ticket; --"}, "HELPDESK_SEARCH_LANGUAGE"),
    ],
)
def test_a_bad_value_names_its_setting(tmp_path: Path, values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_env(tmp_path, **values))
    assert str(caught.value).startswith(named + ":")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "sqlite+pysqlite:///x.db", "postgresql://u:p@db/helpdesk", "postgresql+psycopg://u@db:5433/hd"]
)
def test_the_installed_database_drivers_are_accepted(tmp_path: Path, url: str) -> None:
    assert load(_env(tmp_path, HELPDESK_DATABASE_URL=url)).database_url == url


def test_unknown_toml_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text('imap_hots = "typo.example"\n')
    with pytest.raises(ConfigError, match="imap_hots"):
        load(_env(tmp_path, HELPDESK_CONFIG=str(config)))


def test_sla_targets_and_business_hours_are_read(tmp_path: Path) -> None:
    settings = load(_env(
        tmp_path,
        HELPDESK_SLA_TARGETS="P1=10m/2h, P5=2d/10d",
        HELPDESK_BUSINESS_HOURS="mon-fri 08:00-17:30 Europe/Berlin",
        HELPDESK_SLA_MANAGER="Boss@Example.org",
        HELPDESK_ACCESS_GRANT_DAYS="30",
        HELPDESK_ACCESS_EXPIRY_WARNING_DAYS="3",
    ))
    assert (settings.access.grant_days, settings.access.expiry_warning_days) == (30, 3)
    assert settings.sla.targets["P1"].response_minutes == 10
    assert settings.sla.targets["P1"].resolution_minutes == 120
    assert settings.sla.targets["P5"].resolution_minutes == 10 * 24 * 60
    assert settings.sla.targets["P3"].response_minutes == 240  # untouched default
    hours = settings.sla.business_hours
    assert hours is not None and hours.timezone == "Europe/Berlin" and hours.weekdays == frozenset(range(5))
    assert settings.sla.manager == "boss@example.org"


def _toml(tmp_path: Path, text: str) -> dict[str, str]:
    config = tmp_path / "helpdesk.toml"
    config.write_text(text)
    return _env(tmp_path, HELPDESK_CONFIG=str(config))


def test_group_approvers_group_escalation_and_holidays_are_read_from_toml(tmp_path: Path) -> None:
    settings = load(_toml(tmp_path, """
business_hours = "mon-fri 08:00-18:00 Europe/Berlin"

[access.approvers]
hr = ["Jack@Example.org", "jill@example.org"]
finance = "fiona@example.org"

[sla]
holidays = ["2026-12-25", 2026-12-26]

[sla.groups]
network = "net-team@example.org"
"""))
    assert settings.access.approvers_by_group == {
        "hr": ("jack@example.org", "jill@example.org"), "finance": ("fiona@example.org",)
    }
    assert settings.sla.group_addresses == {"network": "net-team@example.org"}
    assert settings.sla.business_hours is not None
    assert settings.sla.business_hours.holidays == frozenset({date(2026, 12, 25), date(2026, 12, 26)})
    assert load(_env(tmp_path)).access.approvers_by_group == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[access.approvers]\nhr = ["not an address"]', "access.approvers.hr:"),
        ("[access.approvers]\nhr = []", "access.approvers.hr:"),
        ('[access]\napprover = {hr = "jack@example.org"}', "[access]: approver"),
        ('access = "jack@example.org"', "`access`"),
        ('[sla.groups]\nnetwork = ["net@example.org"]', "sla.groups.network:"),
        ('[sla.groups]\nnetwork = "net-team"', "sla.groups.network:"),
        ('business_hours = "mon-fri 08:00-18:00"\n[sla]\nholidays = ["25.12.2026"]', "sla.holidays:"),
        ('business_hours = "mon-fri 08:00-18:00"\n[sla]\nholidays = "2026-12-25"', "sla.holidays:"),
        ('[sla]\nholidays = ["2026-12-25"]', "sla.holidays: needs HELPDESK_BUSINESS_HOURS"),
        ('[sla]\nholiday = ["2026-12-25"]', "[sla]: holiday"),
        ("[events.nagios]\nsender = 'nagios@(mon01'", "events.nagios.sender: not a valid regular expression"),
        ("[events.nagios]\nsender = ''", "events.nagios.sender:"),
        ("[events.zabbix]\nenabled = 'no'", "events.zabbix.enabled:"),
        ("[events.nagois]\nenabled = false", "events.nagois: unknown integration"),
        ("[events.monit]\nsenders = 'x'", "events.monit: unknown key(s) senders"),
        ("events = 'nagios'", "`events`"),
    ],
)
def test_a_bad_access_sla_or_events_table_names_its_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_toml(tmp_path, text))
    assert str(caught.value).startswith("HELPDESK_CONFIG: ")
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_monitoring_integrations_are_switched_and_limited_to_senders_in_toml(tmp_path: Path) -> None:
    settings = load(_toml(tmp_path, """
[events.nagios]
enabled = true
sender = 'nagios@mon0[1-3]\\.example\\.org'

[events.cron]
enabled = false
"""))
    nagios = settings.events.source("nagios")
    assert nagios.enabled and nagios.sender is not None and nagios.sender.fullmatch("NAGIOS@mon02.example.org")
    assert not settings.events.source("cron").enabled
    assert settings.events.source("zabbix").enabled and settings.events.source("zabbix").sender is None
