"""Mailboxes read and sent through Microsoft Graph (transport = graph), and one line for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.config import ConfigError, load
from helpdesk.core.settings import GRAPH_URL, OAuthFlow, Transport

MICROSOFT_APP = (
    'auth = "oauth2"\noauth_provider = "microsoft"\noauth_tenant = "contoso.example"\n'
    'oauth_client_id = "app-id"\noauth_client_secret = "app-secret"\n'
)


def _load(tmp_path: Path, toml: str, **env: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "helpdesk.toml"
    config.write_text(toml)
    return load({"HELPDESK_DATA_DIR": str(tmp_path / "data"), "HELPDESK_CONFIG": str(config), **env})


def test_a_graph_mailbox_needs_no_host_and_asks_for_graph_permissions(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        '[[mailboxes]]\ntransport = "graph"\nuser = "servicedesk@contoso.example"\n' + MICROSOFT_APP
        + '[[mailboxes]]\ntransport = "Graph"\nuser = "hr@contoso.example"\noauth_flow = "delegated"\n' + MICROSOFT_APP,
    )  # fmt: skip
    shared, delegated = settings.mailboxes
    assert shared.transport is Transport.GRAPH and shared.graph_url == GRAPH_URL
    assert shared.name == "servicedesk@contoso.example@graph/INBOX" and shared.processed_folder == "Processed"
    assert shared.oauth is not None and shared.oauth.scopes == ("https://graph.microsoft.com/.default",)
    assert delegated.oauth is not None and delegated.oauth.flow is OAuthFlow.DELEGATED
    assert delegated.oauth.scopes == ("https://graph.microsoft.com/Mail.ReadWrite", "https://graph.microsoft.com/Mail.Send")


def test_the_single_mailbox_form_and_a_national_cloud(tmp_path: Path) -> None:
    [mailbox] = load({
        "HELPDESK_DATA_DIR": str(tmp_path / "data"), "HELPDESK_IMAP_TRANSPORT": "graph",
        "HELPDESK_IMAP_USER": "help@contoso.example", "HELPDESK_IMAP_AUTH": "oauth2",
        "HELPDESK_IMAP_OAUTH_PROVIDER": "microsoft", "HELPDESK_IMAP_OAUTH_TENANT": "contoso.example",
        "HELPDESK_IMAP_OAUTH_CLIENT_ID": "app-id", "HELPDESK_IMAP_OAUTH_CLIENT_SECRET": "app-secret",
        "HELPDESK_GRAPH_URL": "https://graph.microsoft.us/v1.0/",
    }).mailboxes  # fmt: skip
    assert mailbox.transport is Transport.GRAPH and mailbox.graph_url == "https://graph.microsoft.us/v1.0"
    assert load({"HELPDESK_DATA_DIR": str(tmp_path / "data"), "HELPDESK_IMAP_HOST": "imap.example"} | {
        "HELPDESK_IMAP_USER": "u"}).mailboxes[0].transport is Transport.IMAP  # fmt: skip


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('transport = "graph"\nuser = "a@b.example"\npassword = "x"\n',
         "mailboxes[0].transport: graph needs auth = oauth2 with oauth_provider = microsoft"),
        ('transport = "graph"\nuser = "a@b.example"\nauth = "oauth2"\noauth_provider = "generic"\n'
         'oauth_client_id = "i"\noauth_client_secret = "s"\noauth_token_url = "https://sso.example/token"\n',
         "mailboxes[0].transport: graph needs auth = oauth2 with oauth_provider = microsoft"),
        ('transport = "graph"\nuser = "a@b.example"\nprocessed_folder = ""\n' + MICROSOFT_APP,
         "mailboxes[0].processed_folder: required with transport = graph"),
        ('transport = "pop3"\nuser = "a@b.example"\n', "mailboxes[0].transport: must be one of imap | graph"),
        ('transport = "graph"\n' + MICROSOFT_APP, "mailboxes[0].user: required"),
        ('user = "a@b.example"\n', "mailboxes[0].host: required"),
    ],
)  # fmt: skip
def test_bad_graph_settings_fail_in_one_line(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(ConfigError) as failure:
        _load(tmp_path, "[[mailboxes]]\n" + table)
    assert error in str(failure.value) and "\n" not in str(failure.value)
