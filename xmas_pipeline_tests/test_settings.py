"""The one settings class: the environment read once, defaults, every error at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from xmas_pipeline.settings import Settings, SettingsError

TOKEN = "signup-token-value-xyz"
UNSUB = "unsubscribe-secret-value-xyz"


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.home == tmp_path.resolve() / ".xmas"
    assert settings.inbox_root == str(tmp_path.resolve() / ".xmas" / "inbox")
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / '.xmas' / 'state.db'}"
    assert settings.campaign().name == "Christmas 2025"
    assert settings.intake_public_url == "http://localhost:8000"
    assert settings.public_url is None
    assert settings.effective_send_cron == "*/5 * * * *" and settings.sensor_interval_seconds == 30
    for secret in ("signup_token", "calcom_webhook_secret", "resend_webhook_secret"):
        assert getattr(settings, secret) is None
    assert settings.unsubscribe_secret is None and settings.notion_token is None
    assert settings.intake_max_body_bytes == 64 * 1024
    assert not settings.notion_enabled and not settings.resend_enabled


def test_from_the_environment(tmp_path: Path) -> None:
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        "name: Spring Push\nsteps:\n  - {number: 1, delay: 0h, template: email-1}\n",
        encoding="utf-8",
    )
    env = {
        "XMAS_HOME": str(tmp_path / "home"),
        "XMAS_CAMPAIGN_FILE": str(campaign),
        "XMAS_INTAKE_PORT": "9001",
        "XMAS_SIGNUP_TOKEN": TOKEN,
        "CALCOM_WEBHOOK_SECRET": "cal",
        "RESEND_WEBHOOK_SECRET": "whsec_c2VjcmV0LWtleQ==",
        "XMAS_UNSUBSCRIBE_SECRET": UNSUB,
        "XMAS_PUBLIC_URL": "",  # empty means unset
        "XMAS_TESTING_MODE": "no",
        "NOTION_EMAIL_SEQUENCE_DB_ID": "seq-db",
    }
    settings = Settings.from_env(env)
    assert settings.inbox_root == str(tmp_path / "home" / "inbox")
    assert settings.campaign().name == "Spring Push"
    assert settings.intake_public_url == "http://localhost:9001"
    assert settings.testing_mode is False
    assert Settings.from_env({"XMAS_TESTING_MODE": "yes"}).testing_mode is True
    assert settings.notion_sequences_db_id == "seq-db"
    assert settings.reveal("signup_token") == TOKEN
    assert settings.reveal("calcom_webhook_secret") == "cal"
    assert settings.reveal("resend_webhook_secret") == "whsec_c2VjcmV0LWtleQ=="
    assert settings.reveal("unsubscribe_secret") == UNSUB
    shown = repr(settings) + str(settings)
    for secret in (TOKEN, UNSUB, "whsec_", "'cal'"):
        assert secret not in shown


def test_a_mapping_is_read_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTION_TOKEN", "from-the-shell")
    assert Settings.from_env({"XMAS_HOME": str(tmp_path)}).notion_token is None
    assert Settings.of(home=tmp_path).notion_token is None
    assert Settings.from_env().reveal("notion_token") == "from-the-shell"


def test_every_bad_variable_is_named_at_once_without_its_value() -> None:
    env = {
        "XMAS_SENSOR_INTERVAL_SECONDS": "0",
        "XMAS_FROM_EMAIL": "not an address",
        "RESEND_WEBHOOK_SECRET": "whsec_!!not-base64-secret!!",
        "XMAS_TESTING_MODE": "maybe",
        "XMAS_INTAKE_PORT": "eighty",
        "XMAS_SEND_CRON": "every minute",
        "XMAS_PUBLIC_URL": "busos.example.com",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    problems = caught.value.problems
    assert set(problems) == set(env)
    message = str(caught.value)
    assert "not-base64-secret" not in message
    for name in env:
        assert name in message


def test_a_sender_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"XMAS_FROM_EMAIL": "a@b.com\r\nBcc: x@evil.com"})
    assert "XMAS_FROM_EMAIL" in caught.value.problems


@pytest.mark.parametrize(
    "value",
    [
        "sam@busos.example.com, ops@busos.example.com",
        "sam@busos.example.com; ops@busos.example.com",
        "Sam <sam@busos.example.com>, ops@busos.example.com",
        "Sam <sam@busos.example.com> <ops@busos.example.com>",
        "team: sam@busos.example.com, ops@busos.example.com;",
    ],
)
@pytest.mark.parametrize("variable", ["XMAS_REPLY_TO", "XMAS_FROM_EMAIL"])
def test_two_addresses_are_refused_by_name_without_the_value(variable: str, value: str) -> None:
    # parseaddr reads the first address of a list and passed it; Resend then refused every
    # email of every run for it.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.problems[variable] == "holds 2 addresses: give exactly one"
    assert "busos" not in str(caught.value)


@pytest.mark.parametrize(
    "value",
    ["sam busos.example.com", "sam@busos.example.com ops@busos.example.com", "@", "a@b@c.d"],
)
def test_a_reply_to_that_is_not_one_address_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"XMAS_REPLY_TO": value})
    assert "XMAS_REPLY_TO" in caught.value.problems


@pytest.mark.parametrize(
    "value", ["Sam\x85Smith <sam@busos.example.com>", "Sam\u2028 <s@b.example>"]
)
def test_a_reply_to_with_a_unicode_line_break_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"XMAS_REPLY_TO": value})
    assert "single line" in caught.value.problems["XMAS_REPLY_TO"]


@pytest.mark.parametrize(
    "value",
    [
        "sam@busos.example.com",
        "Sam at BusOS <sam@busos.example.com>",
        '"Doe, Jane" <jane@busos.example.com>',
        "Dr. Jane Doe <jane@busos.example.com>",
        "<sam@busos.example.com>",
    ],
)
def test_one_address_in_any_usual_form_is_accepted(value: str) -> None:
    assert Settings.from_env({"XMAS_REPLY_TO": value}).reply_to == value
    assert Settings.from_env({"XMAS_FROM_EMAIL": value}).from_email == value


def test_the_reputation_guard_lines_default_to_resend_and_gmail_and_are_checked() -> None:
    limits = Settings.of().reputation_limits
    assert limits.window == timedelta(days=7) and limits.min_sent == 200
    assert (limits.warn_bounce, limits.pause_bounce) == (0.04, 0.08)
    assert limits.warn_complaint == pytest.approx(0.0008)
    assert limits.pause_complaint == pytest.approx(0.003)
    custom = Settings.from_env(
        {"XMAS_BOUNCE_WARN_PERCENT": "2", "XMAS_REPUTATION_MIN_SENT": "50"}
    ).reputation_limits
    assert custom.warn_bounce == 0.02 and custom.min_sent == 50
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"XMAS_COMPLAINT_WARN_PERCENT": "0.5"})  # over the 0.3 pause line
    assert "XMAS_COMPLAINT_WARN_PERCENT must be below XMAS_COMPLAINT_PAUSE_PERCENT" in str(
        caught.value
    )
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({"XMAS_BOUNCE_PAUSE_PERCENT": "0", "XMAS_REPUTATION_MIN_SENT": "0"})
    assert set(bad.value.problems) == {"XMAS_BOUNCE_PAUSE_PERCENT", "XMAS_REPUTATION_MIN_SENT"}


def test_testing_mode_sends_every_minute_unless_told_otherwise() -> None:
    # The testing preset's steps are a minute apart: a send every 5 minutes made the
    # "7-minute" sequence take half an hour.
    assert Settings.of(testing_mode=True).effective_send_cron == "* * * * *"
    assert Settings.of().effective_send_cron == "*/5 * * * *"
    chosen = Settings.of(testing_mode=True, send_cron="*/2 * * * *")
    assert chosen.effective_send_cron == "*/2 * * * *"


# -- the signup's abuse protections -----------------------------------------------------------


def test_signup_protection_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.signup_rate_per_ip, settings.signup_rate_per_email) == ("30/hour", "5/hour")
    assert [str(net) for net in settings.trusted_proxy_networks] == ["127.0.0.0/8", "::1/128"]
    assert settings.allowed_origins == ()
    assert settings.captcha_secret is None and settings.captcha_provider == "turnstile"
    assert settings.captcha_url == "https://challenges.cloudflare.com/turnstile/v0/siteverify"


def test_signup_protection_values() -> None:
    settings = Settings.from_env(
        {
            "XMAS_SIGNUP_RATE_PER_IP": "off",
            "XMAS_SIGNUP_RATE_PER_EMAIL": "3/10min",
            "XMAS_TRUSTED_PROXIES": "none",
            "XMAS_SIGNUP_ALLOWED_ORIGINS": "https://www.busos.example/",
            "XMAS_CAPTCHA_SECRET": "captcha-secret-value",
            "XMAS_CAPTCHA_PROVIDER": "hCaptcha",
        }
    )
    assert settings.rate_per_ip is None and str(settings.rate_per_email) == "3/10minute"
    assert settings.trusted_proxy_networks == ()
    assert settings.allowed_origins == ("https://www.busos.example",)
    assert settings.captcha_url == "https://api.hcaptcha.com/siteverify"
    assert "captcha-secret-value" not in repr(settings)


def test_bad_signup_protections_are_named_never_echoed() -> None:
    env = {
        "XMAS_SIGNUP_RATE_PER_IP": "lots-of-them",
        "XMAS_SIGNUP_RATE_PER_EMAIL": "5/fortnight",
        "XMAS_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal",
        "XMAS_SIGNUP_ALLOWED_ORIGINS": "www.busos.example",
        "XMAS_CAPTCHA_PROVIDER": "recaptcha",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert set(caught.value.problems) == set(env)
    for value in ("lots-of-them", "fortnight", "proxy.internal", "www.busos.example"):
        assert value not in str(caught.value)
