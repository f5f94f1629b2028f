"""GET/POST /unsubscribe: the confirmation page and RFC 8058 one-click unsubscribe."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.engine import SqlDatabase
from xmas_pipeline.adapters.sql.migrate import migrate_store
from xmas_pipeline.adapters.sql.secrets import (
    UNSUBSCRIBE,
    SigningKeyMissing,
    SqlSecrets,
    read_unsubscribe_keys,
    unsubscribe_keys,
    unsubscribe_secret,
)
from xmas_pipeline.cli import main
from xmas_pipeline.core.unsubscribe import SigningKeys, make_token, unsubscribe_url
from xmas_pipeline.intake import unsubscribe
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings

SECRET = "unsubscribe-secret"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def settings_for(tmp_path: Path, secret: str | None = SECRET) -> Settings:
    # A home of its own: the generated key lives in its database, never the repository's.
    return Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"), unsubscribe_secret=secret)


def make_client(tmp_path: Path, secret: str | None = SECRET) -> TestClient:
    return TestClient(create_app(settings_for(tmp_path, secret)))


def events(tmp_path: Path) -> list[dict[str, Any]]:
    folder = tmp_path / "inbox" / "email-events"
    return [json.loads(p.read_bytes()) for p in sorted(folder.glob("*/*.json"))]


def path_for(email: str, secret: str = SECRET) -> str:
    parts = urlsplit(unsubscribe_url("https://xmas.example.com", email, secret))
    return f"{parts.path}?{parts.query}"


def test_get_shows_a_confirmation_page_and_changes_nothing(tmp_path: Path) -> None:
    response = make_client(tmp_path).get(path_for("Jane@Example.com"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "jane@example.com" in response.text
    assert 'method=post action="?token=' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert events(tmp_path) == []


def test_one_click_post_records_the_unsubscribe(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    before = datetime.now().astimezone()
    response = client.post(
        path_for("Jane@Example.com"), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    (recorded,) = events(tmp_path)
    assert recorded["type"] == "contact.unsubscribed"
    assert recorded["data"] == {"email": "jane@example.com", "source": "one-click"}
    assert datetime.fromisoformat(recorded["created_at"]) >= before.replace(microsecond=0)


def test_one_click_as_multipart(tmp_path: Path) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--b--\r\n"
    )
    response = make_client(tmp_path).post(
        path_for("jane@example.com"),
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 200
    assert events(tmp_path)[0]["data"]["source"] == "one-click"


def test_the_page_button_records_source_page(tmp_path: Path) -> None:
    response = make_client(tmp_path).post(
        path_for("jane@example.com"), content=b"source=page", headers=ONE_CLICK
    )
    assert response.status_code == 200
    assert events(tmp_path)[0]["data"] == {"email": "jane@example.com", "source": "page"}


def test_token_in_the_form_body(tmp_path: Path) -> None:
    token = make_token("jane@example.com", SECRET)
    response = make_client(tmp_path).post(
        "/unsubscribe", content=f"token={token}&source=page".encode(), headers=ONE_CLICK
    )
    assert response.status_code == 200
    assert len(events(tmp_path)) == 1


def test_repeated_unsubscribe_is_harmless(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    for _ in range(2):
        assert client.post(path_for("jane@example.com"), headers=ONE_CLICK).status_code == 200
    assert {e["data"]["email"] for e in events(tmp_path)} == {"jane@example.com"}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=",
        "?token=garbage",
        "?token=" + "A" * 5000,
        "?token=%00%0d%0a",
        "?token=" + make_token("jane@example.com", "another-secret"),
        "?token=" + make_token("jane@example.com", SECRET)[:-2] + "xx",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_invalid_or_forged_tokens(tmp_path: Path, query: str, method: str) -> None:
    response = make_client(tmp_path).request(method, "/unsubscribe" + query, headers=ONE_CLICK)
    assert response.status_code == 400
    assert "not valid" in response.text
    assert events(tmp_path) == []


def test_html_in_the_address_is_escaped(tmp_path: Path) -> None:
    email = '"<script>alert(1)</script>"@example.com'
    client = make_client(tmp_path)
    page = client.get("/unsubscribe", params={"token": make_token(email, SECRET)})
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
    done = client.post("/unsubscribe", params={"token": make_token(email, SECRET)})
    assert "<script>" not in done.text


# -- without XMAS_UNSUBSCRIBE_SECRET: the key the deployment generated and keeps -------------


def test_without_a_configured_secret_the_stored_key_signs_the_links(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, secret=None)
    client = TestClient(create_app(settings))
    # What a run worker signs the links with, on any host sharing the store.
    stored_key = unsubscribe_secret(None, settings.database_url)
    token = make_token("Jane@Example.com", stored_key)
    page = client.get(f"/unsubscribe?token={token}")
    assert page.status_code == 200 and "jane@example.com" in page.text
    done = client.post(f"/unsubscribe?token={token}", headers=ONE_CLICK)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    (recorded,) = events(tmp_path)
    assert recorded["data"] == {"email": "jane@example.com", "source": "one-click"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_without_a_configured_secret_other_keys_are_refused(tmp_path: Path, method: str) -> None:
    settings = settings_for(tmp_path, secret=None)
    unsubscribe_secret(None, settings.database_url)  # the deployment has its key
    for key in (SECRET, "another-key"):
        token = make_token("jane@example.com", key)
        response = TestClient(create_app(settings)).request(method, f"/unsubscribe?token={token}")
        assert response.status_code == 400
    assert events(tmp_path) == []


def test_the_key_is_looked_up_once_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str | None] = []

    def counted(configured: str | None, database_url: str, engine: Any = None) -> SigningKeys:
        calls.append(configured)
        return unsubscribe_keys(configured, database_url, engine)

    monkeypatch.setattr(unsubscribe, "unsubscribe_keys", counted)
    settings = settings_for(tmp_path, secret=None)
    client = TestClient(create_app(settings))
    assert calls == [] and not (tmp_path / "state.db").exists()  # nothing at start-up
    token = make_token("jane@example.com", unsubscribe_secret(None, settings.database_url))
    for _ in range(3):
        assert client.get(f"/unsubscribe?token={token}").status_code == 200
        assert client.post(f"/unsubscribe?token={token}").status_code == 200
    assert calls == [None]


def test_a_configured_secret_needs_no_database(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    assert client.post(path_for("jane@example.com"), headers=ONE_CLICK).status_code == 200
    assert not (tmp_path / "state.db").exists()
    # And a key the store holds is not accepted in its place.
    stored_key = unsubscribe_secret(None, settings_for(tmp_path).database_url)
    token = make_token("jane@example.com", stored_key)
    assert client.post(f"/unsubscribe?token={token}").status_code == 400


def test_an_unreachable_store_is_503_until_it_is_back(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the database's folder cannot be made here")
    database_url = f"sqlite:///{blocker / 'state.db'}"
    settings = Settings.of(
        home=tmp_path, inbox_url=str(tmp_path / "inbox"), database_url=database_url
    )
    client = TestClient(create_app(settings))
    path = "/unsubscribe?token=" + make_token("jane@example.com", "whatever")
    for method in ("GET", "POST"):
        response = client.request(method, path)
        assert response.status_code == 503
        assert "try again" in response.text
    assert events(tmp_path) == []
    # A failed lookup is not remembered: once the store is back, links work.
    blocker.unlink()
    token = make_token("jane@example.com", unsubscribe_secret(None, database_url))
    assert client.post(f"/unsubscribe?token={token}").status_code == 200
    assert len(events(tmp_path)) == 1


def test_storage_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "inbox").write_text("not a folder")
    response = make_client(tmp_path).post(path_for("jane@example.com"), headers=ONE_CLICK)
    assert response.status_code == 503
    assert "try again" in response.text.lower()


def test_huge_post_body(tmp_path: Path) -> None:
    response = make_client(tmp_path).post(
        path_for("jane@example.com"), content=b"x=" + b"y" * 70_000, headers=ONE_CLICK
    )
    assert response.status_code == 413
    assert events(tmp_path) == []


@pytest.mark.parametrize("secret", [SECRET, None], ids=["configured", "generated"])
def test_links_already_sent_keep_working_after_a_key_rotation(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret: str | None,
) -> None:
    settings = settings_for(tmp_path, secret)
    client = TestClient(create_app(settings))
    before = unsubscribe_keys(secret, settings.database_url)
    legacy = make_token("old@example.com", before.oldest)  # sent before key ids
    keyed = make_token("kid0@example.com", before)
    assert keyed.endswith(".0")
    assert client.get(f"/unsubscribe?token={keyed}").status_code == 200  # keys now cached

    monkeypatch.setenv("XMAS_HOME", str(tmp_path))
    monkeypatch.delenv("XMAS_DATABASE_URL", raising=False)
    if secret:
        monkeypatch.setenv("XMAS_UNSUBSCRIBE_SECRET", secret)
    else:
        monkeypatch.delenv("XMAS_UNSUBSCRIBE_SECRET", raising=False)
    assert main(["rotate-unsubscribe-key"]) == 0
    assert "key 1" in capsys.readouterr().out
    after = unsubscribe_keys(secret, settings.database_url)
    assert after.current[0] == "1" and after.oldest == before.oldest
    fresh = make_token("new@example.com", after)
    assert fresh.endswith(".1")

    # The running intake learns the new key from the first link that names it.
    for token in (legacy, keyed, fresh):
        assert client.post(f"/unsubscribe?token={token}").status_code == 200, token
    assert {e["data"]["email"] for e in events(tmp_path)} == {
        "old@example.com",
        "kid0@example.com",
        "new@example.com",
    }
    # A key id nobody made, or a mac from another key under a real id, is refused.
    forged = make_token("x@example.com", SigningKeys((("1", "not-the-key"),)))
    assert client.post(f"/unsubscribe?token={forged}").status_code == 400
    assert client.post(f"/unsubscribe?token={fresh[:-1]}7").status_code == 400


# -- a store the intake may only read (PostgreSQL in production) ------------------------


def test_a_read_only_intake_answers_503_until_the_key_exists_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on PostgreSQL: the intake may not create the key (nor its table).
    monkeypatch.setattr(unsubscribe, "creates_its_tables", lambda url: False)
    settings = settings_for(tmp_path, secret=None)
    SqlDatabase(settings.database_url).prepare()  # the tables, but no key yet
    client = TestClient(create_app(settings))
    token = make_token("jane@example.com", "a key nobody made")
    for method in ("GET", "POST"):
        assert client.request(method, f"/unsubscribe?token={token}").status_code == 503
    assert SqlSecrets(settings.database_url).read(UNSUBSCRIBE) is None  # still no key
    with pytest.raises(SigningKeyMissing):
        read_unsubscribe_keys(None, settings.database_url)
    # The migrate step makes it; from then on the intake verifies links with it.
    migrate_store(settings.database_url)
    keys = read_unsubscribe_keys(None, settings.database_url)
    assert keys == unsubscribe_keys(None, settings.database_url)
    done = client.post(f"/unsubscribe?token={make_token('jane@example.com', keys)}")
    assert done.status_code == 200 and len(events(tmp_path)) == 1


def test_the_read_only_lookup_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with pytest.raises(sa.exc.OperationalError):  # no table, and none is made
        read_unsubscribe_keys(None, url)
    with pytest.raises(sa.exc.OperationalError):
        read_unsubscribe_keys("a configured base key", url)  # rotations are read too
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
