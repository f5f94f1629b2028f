"""What every email carries, however the deployment is configured: a working one-click
unsubscribe link (never `<None>`), signed with a key that survives restarts, the reply-to
address; and Resend refusing, before sending anything, a setup that would mail people
links they cannot use or no postal address."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.secrets import unsubscribe_secret
from xmas_pipeline.core.unsubscribe import verify_token
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)


def _welcome(env: PipelineEnv, **config: object) -> dg.ExecuteInProcessResult:
    env.drop_signup(signup("reader@x.com"))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        return env.send(today(), instance, catch_up=True, **config)


def _headers_of_the_one_email(env: PipelineEnv) -> email.message.EmailMessage:
    [name] = env.outbox_files()
    raw = (env.outbox / name).read_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def _token(header: str) -> str:
    return parse_qs(urlsplit(header.strip("<>")).query)["token"][0]


def test_without_any_unsubscribe_setting_the_link_still_works(tmp_path: Path) -> None:
    env = make_env(tmp_path / "home", XMAS_TESTING_MODE="true", XMAS_INTAKE_PORT="8123")
    assert materializations(_welcome(env), "deliveries")[0]["sent"] == 1
    mail = _headers_of_the_one_email(env)
    link = str(mail["List-Unsubscribe"])
    assert "None" not in link
    assert link.startswith("<http://localhost:8123/unsubscribe?token=")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "http://localhost:8123/unsubscribe?token=" in body
    # Signed with the key this deployment generated and keeps: the intake (another
    # process, later) reads the same key and accepts the link.
    key = unsubscribe_secret(None, env.settings.database_url)
    assert verify_token(_token(link), key) == "reader@x.com"
    engine = sa.create_engine(env.settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM secrets")).scalar_one()
    engine.dispose()
    assert rows == 1
    # A restart (a fresh environment on the same database) signs with the same key.
    again = make_env(tmp_path / "home", XMAS_TESTING_MODE="true", XMAS_INTAKE_PORT="8123")
    assert unsubscribe_secret(None, again.settings.database_url) == key


def test_a_configured_key_and_reply_to_are_used(tmp_path: Path) -> None:
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_PUBLIC_URL="https://campaign.example.com",
        XMAS_UNSUBSCRIBE_SECRET="configured-key",
        XMAS_REPLY_TO="Sam at BusOS <sam@busos.example.com>",
    )
    assert materializations(_welcome(env), "deliveries")[0]["sent"] == 1
    mail = _headers_of_the_one_email(env)
    link = str(mail["List-Unsubscribe"])
    assert link.startswith("<https://campaign.example.com/unsubscribe?token=")
    assert verify_token(_token(link), "configured-key") == "reader@x.com"
    assert str(mail["Reply-To"]) == "Sam at BusOS <sam@busos.example.com>"


def _resend_env(tmp_path: Path, base_url: str, **env: str) -> PipelineEnv:
    values = {
        "XMAS_TESTING_MODE": "true",
        "RESEND_API_KEY": DEFAULT_API_KEY,
        "RESEND_API_URL": base_url,
        "XMAS_POSTAL_ADDRESS": "BusOS Ltd, 1 King St W, Toronto ON",
        "XMAS_PUBLIC_URL": "https://campaign.example.com",
        **env,
    }
    return make_env(tmp_path / "home", **values)


def test_resend_refuses_links_readers_could_not_use(tmp_path: Path) -> None:
    with running_fake(rate_limit=None) as resend:
        for public_url, reason in (
            ("http://campaign.example.com", "not an https address"),
            ("", "XMAS_PUBLIC_URL is not set"),
        ):
            env = _resend_env(tmp_path / reason[:6], resend.base_url, XMAS_PUBLIC_URL=public_url)
            result = _welcome(env)
            assert not result.success
            [failure] = [
                e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
            ]
            message = str(failure.event_specific_data.error.message)  # type: ignore[union-attr]
            assert "Nothing sent" in message and reason in message
            assert DEFAULT_API_KEY not in message
        assert resend.accepted == []
        # A loopback http address is fine for local tests.
        env = _resend_env(
            tmp_path / "loop", resend.base_url, XMAS_PUBLIC_URL="http://127.0.0.1:8000"
        )
        assert materializations(_welcome(env), "deliveries")[0]["sent"] == 1


def test_resend_refuses_to_send_without_a_postal_address(tmp_path: Path) -> None:
    with running_fake(rate_limit=None) as resend:
        env = _resend_env(tmp_path / "a", resend.base_url, XMAS_POSTAL_ADDRESS="")
        result = _welcome(env)
        assert not result.success
        assert "XMAS_POSTAL_ADDRESS is not set" in str(result.all_events)
        assert resend.accepted == []
        env = _resend_env(tmp_path / "b", resend.base_url)
        assert materializations(_welcome(env), "deliveries")[0]["sent"] == 1
        [mail] = resend.accepted
        assert "BusOS Ltd, 1 King St W, Toronto ON" in mail.html
