"""OAuth2 (XOAUTH2) settings per mailbox and for SMTP, and one line for each bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpdesk.core.settings import AuthKind, OAuthFlow, OAuthProvider
from helpdesk.config import ConfigError, load

IMAP = {"HELPDESK_IMAP_HOST": "outlook.office365.com", "HELPDESK_IMAP_USER": "help@contoso.example"}
MICROSOFT = {
    **IMAP,
    "HELPDESK_IMAP_AUTH": "oauth2",
    "HELPDESK_IMAP_OAUTH_PROVIDER": "microsoft",
    "HELPDESK_IMAP_OAUTH_TENANT": "contoso.example",
    "HELPDESK_IMAP_OAUTH_CLIENT_ID": "app-id",
    "HELPDESK_IMAP_OAUTH_CLIENT_SECRET": "app-secret",
}


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HELPDESK_DATA_DIR": str(tmp_path / "data"), **values}


def test_password_stays_the_default(tmp_path: Path) -> None:
    [mailbox] = load(_env(tmp_path, **IMAP)).mailboxes
    assert mailbox.auth is AuthKind.PASSWORD and mailbox.oauth is None


def test_microsoft_app_only_from_the_environment(tmp_path: Path) -> None:
    [mailbox] = load(_env(tmp_path, **MICROSOFT)).mailboxes
    assert mailbox.auth is AuthKind.OAUTH2 and mailbox.oauth is not None
    assert mailbox.oauth.provider is OAuthProvider.MICROSOFT and mailbox.oauth.flow is OAuthFlow.APP
    assert mailbox.oauth.authority == "https://login.microsoftonline.com/contoso.example"
    assert mailbox.oauth.scopes == ("https://outlook.office365.com/.default",)
    assert "app-secret" not in repr(mailbox)  # settings end up in logs and tracebacks


def test_generic_and_google_in_mailbox_tables_and_smtp(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text(
        '[[mailboxes]]\nname = "hr"\nhost = "imap.gmail.com"\nuser = "hr@corp.example"\nauth = "oauth2"\n'
        'oauth_provider = "google"\noauth_flow = "delegated"\noauth_client_id = "g-id"\n'
        '[[mailboxes]]\nname = "lab"\nhost = "imap.lab.example"\nuser = "lab"\nauth = "OAuth2"\n'
        'oauth_provider = "generic"\noauth_client_id = "l-id"\noauth_client_secret = "l-s"\n'
        'oauth_token_url = "https://sso.lab.example/token"\noauth_scopes = "imap, offline"\n'
    )
    settings = load(
        _env(
            tmp_path,
            HELPDESK_CONFIG=str(config),
            HELPDESK_SMTP_HOST="smtp.lab.example",
            HELPDESK_SMTP_USER="lab",
            HELPDESK_SMTP_AUTH="oauth2",
            HELPDESK_SMTP_OAUTH_PROVIDER="generic",
            HELPDESK_SMTP_OAUTH_CLIENT_ID="s-id",
            HELPDESK_SMTP_OAUTH_CLIENT_SECRET="s-s",
            HELPDESK_SMTP_OAUTH_TOKEN_URL="https://sso.lab.example/token",
        )
    )
    hr, lab = settings.mailboxes
    assert hr.oauth is not None and hr.oauth.token_url == "https://oauth2.googleapis.com/token"
    assert hr.oauth.flow is OAuthFlow.DELEGATED and hr.oauth.scopes == ("https://mail.google.com/",)
    assert lab.oauth is not None and lab.oauth.scopes == ("imap", "offline")
    assert settings.smtp is not None and settings.smtp.auth is AuthKind.OAUTH2
    assert settings.smtp.oauth is not None and settings.smtp.oauth.client_id == "s-id"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**IMAP, "HELPDESK_IMAP_AUTH": "kerberos"}, "HELPDESK_IMAP_AUTH: must be one of password | oauth2"),
        ({**IMAP, "HELPDESK_IMAP_AUTH": "oauth2"}, "HELPDESK_IMAP_OAUTH_PROVIDER: required with auth = oauth2"),
        ({**MICROSOFT, "HELPDESK_IMAP_OAUTH_PROVIDER": "yahoo"}, "HELPDESK_IMAP_OAUTH_PROVIDER: must be one of microsoft"),
        ({**MICROSOFT, "HELPDESK_IMAP_OAUTH_TENANT": ""}, "HELPDESK_IMAP_OAUTH_TENANT: required with the microsoft"),
        ({**MICROSOFT, "HELPDESK_IMAP_OAUTH_CLIENT_SECRET": ""}, "HELPDESK_IMAP_OAUTH_CLIENT_SECRET: required for the app"),
        ({**MICROSOFT, "HELPDESK_IMAP_OAUTH_FLOW": "implicit"}, "HELPDESK_IMAP_OAUTH_FLOW: must be one of app | delegated"),
        ({**MICROSOFT, "HELPDESK_IMAP_OAUTH_PROVIDER": "generic"}, "HELPDESK_IMAP_OAUTH_TOKEN_URL: required with the generic"),
        (
            {**MICROSOFT, "HELPDESK_IMAP_OAUTH_PROVIDER": "generic", "HELPDESK_IMAP_OAUTH_TOKEN_URL": "sso/token"},
            "HELPDESK_IMAP_OAUTH_TOKEN_URL: must be an https://",
        ),
        (
            {"HELPDESK_SMTP_HOST": "smtp.x.example", "HELPDESK_SMTP_AUTH": "oauth2", "HELPDESK_SMTP_OAUTH_PROVIDER": "google",
             "HELPDESK_SMTP_OAUTH_CLIENT_ID": "c", "HELPDESK_SMTP_OAUTH_CLIENT_SECRET": "s"},
            "HELPDESK_SMTP_USER: required with HELPDESK_SMTP_AUTH = oauth2",
        ),
    ],
)  # fmt: skip
def test_bad_oauth_values_name_the_setting_in_one_line(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(_env(tmp_path, **values))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_bad_mailbox_table_value_names_its_key(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text('[[mailboxes]]\nhost = "h"\nuser = "u"\nauth = "oauth2"\noauth_provider = "msft"\n')
    with pytest.raises(ConfigError, match=r"^HELPDESK_CONFIG: mailboxes\[0\]\.oauth_provider: must be one of"):
        load(_env(tmp_path, HELPDESK_CONFIG=str(config)))


def _rsa_pem() -> tuple[str, object]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(), key


def test_google_service_account_acts_for_the_mailbox_user(tmp_path: Path) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps({"client_email": "reader@p.iam.gserviceaccount.com", "private_key": _rsa_pem()[0]}))
    config = tmp_path / "helpdesk.toml"
    config.write_text(
        '[[mailboxes]]\nname = "hr"\nhost = "imap.gmail.com"\nuser = "hr@corp.example"\nauth = "oauth2"\n'
        f'oauth_provider = "google"\noauth_service_account_file = "{key_file}"\n'
    )  # no client id or secret: the key file names the account
    [mailbox] = load(_env(tmp_path, HELPDESK_CONFIG=str(config))).mailboxes
    assert mailbox.oauth is not None and mailbox.oauth.service_account_file == key_file
    assert mailbox.oauth.subject == "hr@corp.example" and mailbox.oauth.flow is OAuthFlow.APP
    assert "PRIVATE KEY" not in repr(mailbox)


def test_microsoft_certificate_credential_replaces_the_secret(tmp_path: Path) -> None:
    from tests.servers.imap import make_self_signed_cert

    cert, key = tmp_path / "app.crt", tmp_path / "app.key"
    make_self_signed_cert(cert, key)
    values = {**MICROSOFT, "HELPDESK_IMAP_OAUTH_CLIENT_SECRET": "", "HELPDESK_IMAP_OAUTH_CERTIFICATE_FILE": str(cert),
              "HELPDESK_IMAP_OAUTH_PRIVATE_KEY_FILE": str(key)}  # fmt: skip
    [mailbox] = load(_env(tmp_path, **values)).mailboxes
    assert mailbox.oauth is not None and mailbox.oauth.certificate_file == cert and mailbox.oauth.private_key_file == key


@pytest.mark.parametrize(
    ("key", "content", "message"),
    [
        ("SERVICE_ACCOUNT_FILE", '{"type": "service_account"}', "not a service-account key file"),
        ("SERVICE_ACCOUNT_FILE", "not json", "service-account key file"),
        ("CERTIFICATE_FILE", "not a certificate", "HELPDESK_IMAP_OAUTH_CERTIFICATE_FILE: "),
    ],
)
def test_unusable_key_files_are_one_line_naming_the_setting(tmp_path: Path, key: str, content: str, message: str) -> None:
    path = tmp_path / "key-file"
    path.write_text(content)
    provider = "google" if key == "SERVICE_ACCOUNT_FILE" else "microsoft"
    values = {**MICROSOFT, "HELPDESK_IMAP_OAUTH_PROVIDER": provider, f"HELPDESK_IMAP_OAUTH_{key}": str(path),
              "HELPDESK_IMAP_OAUTH_PRIVATE_KEY_FILE": str(path) if provider == "microsoft" else ""}  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load(_env(tmp_path, **values))
    text = str(error.value)
    assert text.startswith(f"HELPDESK_IMAP_OAUTH_{key}: ") and message in text and "\n" not in text
