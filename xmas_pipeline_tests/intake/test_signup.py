"""POST /webhook/christmas-signup: valid, invalid and hostile input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings

URL = "/webhook/christmas-signup"
TOKEN = "s3cret-signup-token"


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"), **overrides)
    return TestClient(create_app(settings))


def stored(tmp_path: Path, kind: str = "signups") -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / kind).glob("*/*.json"))]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


def signup(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "jane@example.com",
        "first_name": "Jane",
        "business_name": "Acme Plumbing",
        "assessment_score": 52,
        "red_systems": 1,
        "orange_systems": 2,
        "yellow_systems": 1,
        "green_systems": 4,
        "gps_score": 40,
        "money_score": 60,
        "weakest_system_1": "Marketing",
        "weakest_system_2": "Sales",
        "revenue_leak_total": 12000,
    }
    body.update(overrides)
    return body


def post_json(client: TestClient, body: Any, **kwargs: Any) -> Any:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(URL, content=raw, headers=headers, **kwargs)


# -- accepted -------------------------------------------------------------------------------


def test_accepted_signup_is_stored_byte_for_byte(client: TestClient, tmp_path: Path) -> None:
    # Odd spacing, key order and an unknown key: the file must hold exactly these bytes.
    raw = (
        b'{ "first_name":"Jane",  "email" : "Jane@Example.com","assessment_score":"52",'
        b'"red_systems":2, "utm_source":"newsletter" }'
    )
    response = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "accepted"
    assert answer["email"] == "Jane@example.com"
    assert answer["campaign"] == "Christmas 2025"
    assert answer["segment"] == "CRITICAL"
    assert stored(tmp_path) == [raw]
    (path,) = (tmp_path / "inbox" / "signups").glob("*/*.json")
    assert path.name == answer["event_id"] + ".json"
    assert not list((tmp_path / "inbox" / ".tmp").iterdir())


def test_full_original_payload(client: TestClient, tmp_path: Path) -> None:
    response = post_json(client, signup())
    assert response.status_code == 202
    assert response.json()["segment"] == "URGENT"
    assert json.loads(stored(tmp_path)[0]) == signup()


def test_only_required_fields_and_nulls(client: TestClient, tmp_path: Path) -> None:
    body = {
        "email": "a@b.co",
        "first_name": "A",
        "assessment_score": 0,
        "business_name": None,
        "red_systems": None,
    }
    response = post_json(client, body)
    assert response.status_code == 202
    assert response.json()["segment"] == "OPTIMIZE"
    assert len(stored(tmp_path)) == 1


@pytest.mark.parametrize(
    "name", ["Zoë", "Ñúñez-O'Brien", "李雷", "Дарья", "🎄 Noël", "Ａｃｍｅ", "a" * 100]
)
def test_unicode_names(client: TestClient, tmp_path: Path, name: str) -> None:
    raw = json.dumps(signup(first_name=name, business_name=name), ensure_ascii=False).encode()
    response = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 202
    assert stored(tmp_path) == [raw]


def test_html_in_names_is_stored_verbatim_never_reflected(
    client: TestClient, tmp_path: Path
) -> None:
    # Templates escape at render time; the intake keeps the raw body and echoes no names.
    name = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    response = post_json(client, signup(first_name=name, business_name="<b>Acme</b> & Co"))
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert "<script>" not in response.text
    assert json.loads(stored(tmp_path)[0])["first_name"] == name


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=utf-8"])
def test_json_under_lenient_content_types(
    client: TestClient, tmp_path: Path, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    raw = json.dumps(signup()).encode()
    response = client.post(URL, content=raw, headers=headers)
    assert response.status_code == 202
    assert stored(tmp_path) == [raw]


def test_body_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    client = make_client(tmp_path, intake_max_body_bytes=64 * 1024)
    base = json.dumps(signup(padding="")).encode()
    raw = json.dumps(signup(padding="x" * (64 * 1024 - len(base)))).encode()
    assert len(raw) == 64 * 1024
    assert client.post(URL, content=raw).status_code == 202


# -- rejected: 422 --------------------------------------------------------------------------


def errors_of(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "rejected"
    return body["errors"]


def test_missing_required_fields(client: TestClient, tmp_path: Path) -> None:
    errors = errors_of(post_json(client, {"business_name": "Acme"}))
    assert set(errors) == {"email", "first_name", "assessment_score"}
    assert all(reason for reason in errors.values())
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("assessment_score", 101),
        ("assessment_score", -1),
        ("gps_score", 1000),
        ("money_score", -5),
        ("red_systems", 9),
        ("red_systems", 21),
        ("orange_systems", -1),
        ("orange_systems", 9),
        ("yellow_systems", 9),
        ("green_systems", 9),
        ("green_systems", 10**6),
        ("revenue_leak_total", -(10**9) - 1),
        ("revenue_leak_total", -(10**12)),
        ("revenue_leak_total", 10**9 + 1),
    ],
)
def test_out_of_range(client: TestClient, tmp_path: Path, field: str, value: int) -> None:
    errors = errors_of(post_json(client, signup(**{field: value})))
    assert list(errors) == [field]
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("assessment_score", 52.5),
        ("assessment_score", "fifty"),
        ("assessment_score", [52]),
        ("assessment_score", {"value": 52}),
        ("red_systems", "2.5"),
        ("email", 42),
        ("email", "not-an-email"),
        ("email", "jane@example.com\r\nBcc: victim@example.com"),
        ("first_name", 123),
        ("first_name", None),
        ("first_name", ["Jane"]),
        ("first_name", "x" * 101),
        ("weakest_system_2", "x" * 101),
        ("business_name", {"n": 1}),
        ("weakest_system_1", 7),
    ],
)
def test_wrong_types_and_values(client: TestClient, tmp_path: Path, field: str, value: Any) -> None:
    errors = errors_of(post_json(client, signup(**{field: value})))
    assert list(errors) == [field]
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    ["Jane\r\nBcc: x@evil.example", "Jane\nDoe", "Jane\x00", "Jane\u2028Doe", "A\tB"],
)
@pytest.mark.parametrize("field", ["first_name", "business_name", "weakest_system_2"])
def test_crlf_and_control_characters_in_names(
    client: TestClient, tmp_path: Path, field: str, name: str
) -> None:
    errors = errors_of(post_json(client, signup(**{field: name})))
    assert "control characters" in errors[field]
    assert stored(tmp_path) == []


@pytest.mark.parametrize("body", [[signup()], "jane@example.com", 52, None, True])
def test_json_that_is_not_an_object(client: TestClient, tmp_path: Path, body: Any) -> None:
    assert errors_of(post_json(client, body)) == {"body": "must be a JSON object"}
    assert stored(tmp_path) == []


# -- rejected: malformed bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{bad json",
        b'{"email": "jane@example.com",}',
        b"email=jane@example.com&first_name=Jane",
        b'{"email": "a@b.co", "first_name": "A", "assessment_score": NaN}',
        b'{"email": "a@b.co", "first_name": "A", "assessment_score": Infinity}',
        b'{"assessment_score": ' + b"9" * 5000 + b"}",
        b"[" * 30_000 + b"]" * 30_000,
        b'{"email": "jane@example.com", "first_name": "\xff\xfe"}',
        b"\xef\xbb\xbf" + json.dumps(signup()).encode(),  # a UTF-8 byte-order mark
        json.dumps(signup()).encode("utf-16"),
    ],
    ids=[
        "empty",
        "truncated",
        "trailing-comma",
        "form-encoded",
        "nan",
        "infinity",
        "huge-integer",
        "deep-nesting",
        "invalid-utf8",
        "utf8-bom",
        "utf16",
    ],
)
def test_bodies_that_are_not_json(client: TestClient, tmp_path: Path, raw: bytes) -> None:
    response = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"status": "rejected", "reason": "body is not valid JSON"}
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_non_json_content_types(client: TestClient, tmp_path: Path, content_type: str) -> None:
    response = client.post(
        URL, content=json.dumps(signup()), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert stored(tmp_path) == []


def test_declared_oversized_body_is_refused(client: TestClient, tmp_path: Path) -> None:
    raw = json.dumps(signup(padding="x" * 70_000)).encode()
    response = client.post(URL, content=raw)
    assert response.status_code == 413
    assert response.json()["status"] == "rejected"
    assert stored(tmp_path) == []


def test_chunked_oversized_body_is_cut_off(client: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        # No Content-Length: the server has to count as it reads, and stop early.
        for _ in range(1000):
            yield b" " * 4096

    response = client.post(URL, content=chunks())
    assert response.status_code == 413
    assert stored(tmp_path) == []


def test_invalid_content_length(client: TestClient) -> None:
    response = client.post(URL, content=b"{}", headers={"Content-Length": "-1"})
    assert response.status_code == 400


def test_wrong_method(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url="/nonexistent/inbox")))
    assert client.get(URL).status_code == 405
    assert client.put(URL, json=signup()).status_code == 405


# -- the bearer token -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_token_scheme_is_case_insensitive(tmp_path: Path, scheme: str) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    response = post_json(client, signup(), headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 202
    assert len(stored(tmp_path)) == 1


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer wrong-token",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN.upper()}",
    ],
)
def test_missing_or_wrong_token(tmp_path: Path, header: str | None) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    headers = {"Authorization": header} if header is not None else {}
    response = post_json(client, signup(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text
    assert stored(tmp_path) == []


def test_non_ascii_token_header_is_refused(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    raw = json.dumps(signup()).encode()
    response = client.post(URL, content=raw, headers=[(b"authorization", b"Bearer \xe9\xff")])
    assert response.status_code == 401


def test_auth_is_checked_before_the_body(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    assert client.post(URL, content=b"x" * 100_000).status_code == 401
    assert client.post(URL, content=b"{bad").status_code == 401


def test_no_token_configured_means_open(client: TestClient) -> None:
    response = post_json(client, signup(), headers={"Authorization": "Bearer anything"})
    assert response.status_code == 202


# -- browsers, failures ---------------------------------------------------------------------


def test_cors_preflight_and_header(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_allowed_origins="https://busos.example")
    preflight = client.options(
        URL,
        headers={
            "Origin": "https://busos.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://busos.example"
    assert preflight.headers["vary"] == "Origin"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    page = {"Origin": "https://busos.example"}
    for body in (signup(), {}):
        answer = post_json(client, body, headers=page)
        assert answer.headers["access-control-allow-origin"] == "https://busos.example"
        assert answer.headers["vary"] == "Origin"


def test_storage_failure_is_503_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    blocker = tmp_path / "inbox"
    blocker.write_text("a file where the inbox folder should be")
    client = make_client(tmp_path)
    response = post_json(client, signup())
    assert response.status_code == 503
    assert response.json()["status"] == "rejected"
