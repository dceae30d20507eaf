"""Console single sign-on settings (HELPDESK_OIDC_*, HELPDESK_LOCAL_LOGIN) and one line for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.config import ConfigError, load

OIDC = {
    "HELPDESK_OIDC_ISSUER": "https://sso.example.org/realms/it",
    "HELPDESK_OIDC_CLIENT_ID": "helpdesk",
    "HELPDESK_OIDC_CLIENT_SECRET": "s3cret-value",
    "HELPDESK_OIDC_ROLES": "admin=helpdesk-admins, agent=helpdesk-agents,agent=servicedesk,approver=security",
}


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HELPDESK_DATA_DIR": str(tmp_path / "data"), **values}


def test_off_by_default_and_local_passwords_on(tmp_path: Path) -> None:
    settings = load(_env(tmp_path))
    assert settings.oidc is None and settings.local_login is True


def test_provider_roles_and_scopes_from_the_environment(tmp_path: Path) -> None:
    settings = load(_env(tmp_path, **OIDC, HELPDESK_OIDC_SCOPES="email profile", HELPDESK_LOCAL_LOGIN="no"))
    oidc = settings.oidc
    assert oidc is not None and settings.local_login is False
    assert oidc.issuer == "https://sso.example.org/realms/it" and oidc.client_id == "helpdesk"
    assert oidc.scopes == ("openid", "email", "profile")  # openid is what makes it OpenID Connect
    assert oidc.roles == (("admin", ("helpdesk-admins",)), ("agent", ("helpdesk-agents", "servicedesk")),
                          ("approver", ("security",)))
    assert oidc.roles_claim == "groups" and oidc.name == "sso.example.org"
    assert "s3cret-value" not in repr(settings)  # settings end up in logs and tracebacks


def test_claim_name_and_label(tmp_path: Path) -> None:
    oidc = load(_env(tmp_path, **OIDC, HELPDESK_OIDC_ROLES_CLAIM="roles", HELPDESK_OIDC_NAME="Contoso")).oidc
    assert oidc is not None and oidc.roles_claim == "roles" and oidc.name == "Contoso"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**OIDC, "HELPDESK_OIDC_ISSUER": "sso.example.org"}, "HELPDESK_OIDC_ISSUER: must be an https:// URL"),
        ({**OIDC, "HELPDESK_OIDC_ISSUER": "http://sso.example.org"}, "HELPDESK_OIDC_ISSUER: must be an https:// URL"),
        ({**OIDC, "HELPDESK_OIDC_CLIENT_ID": ""}, "HELPDESK_OIDC_CLIENT_ID: required with HELPDESK_OIDC_ISSUER"),
        ({**OIDC, "HELPDESK_OIDC_ROLES": ""}, "HELPDESK_OIDC_ROLES: required with HELPDESK_OIDC_ISSUER"),
        ({**OIDC, "HELPDESK_OIDC_ROLES": "boss=helpdesk-admins"}, "HELPDESK_OIDC_ROLES: entries look like ROLE=GROUP"),
        ({**OIDC, "HELPDESK_OIDC_ROLES": "user=everyone"}, "HELPDESK_OIDC_ROLES: entries look like ROLE=GROUP"),
        ({**OIDC, "HELPDESK_OIDC_ROLES": "admin="}, "HELPDESK_OIDC_ROLES: entries look like ROLE=GROUP"),
        ({**OIDC, "HELPDESK_OIDC_ROLES_CLAIM": "  "}, "HELPDESK_OIDC_ROLES_CLAIM: must be a claim name"),
        ({"HELPDESK_OIDC_CLIENT_ID": "helpdesk"}, "HELPDESK_OIDC_CLIENT_ID: needs HELPDESK_OIDC_ISSUER"),
        ({"HELPDESK_LOCAL_LOGIN": "no"}, "HELPDESK_LOCAL_LOGIN: no needs HELPDESK_OIDC_ISSUER"),
        ({**OIDC, "HELPDESK_LOCAL_LOGIN": "never"}, "HELPDESK_LOCAL_LOGIN: must be yes or no"),
    ],
)
def test_bad_values_stop_with_one_line(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_env(tmp_path, **values))
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert "s3cret-value" not in text


def test_loopback_http_issuer_is_allowed_for_a_local_provider(tmp_path: Path) -> None:
    oidc = load(_env(tmp_path, **{**OIDC, "HELPDESK_OIDC_ISSUER": "http://127.0.0.1:9000/"})).oidc
    assert oidc is not None and oidc.issuer == "http://127.0.0.1:9000/"  # as given: it must equal the tokens' iss


def test_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text('oidc_issuer = "https://accounts.google.com"\noidc_client_id = "g"\n'
                      'oidc_roles = "agent=example.org"\noidc_roles_claim = "hd"\nlocal_login = "no"\n')
    settings = load(_env(tmp_path, HELPDESK_CONFIG=str(config)))
    assert settings.oidc is not None and settings.oidc.roles == (("agent", ("example.org",)),)
    assert settings.local_login is False
