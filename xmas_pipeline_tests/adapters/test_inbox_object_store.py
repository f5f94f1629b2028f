"""The inbox in an S3-compatible store, through the real s3fs and botocore code path.

moto's server runs on loopback for the whole module; each test gets a bucket of its own and
reaches it the way a deployment does, through the standard AWS_* variables alone. The tests
of what a folder and a bucket share run on both, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from s3fs import S3FileSystem
from starlette.testclient import TestClient
from upath import UPath

from xmas_pipeline.adapters.inbox import Inbox, utc_day
from xmas_pipeline.adapters.inbox_object_store import ObjectStore
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.services.forget import forget_inbox
from xmas_pipeline.services.inbox_days import read_signup_day
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.support.clock import MovableClock

PREFIX = "inbox"
NAME = re.compile(r"^\d{20}-[0-9a-f]{32}\.json$")
SIGNUP_URL = "/webhook/christmas-signup"
# Puts one raw file or object at a path relative to the inbox root, outside `Inbox.write`.
Drop = Callable[[str, bytes], None]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The AWS_* variables pointing at moto, nothing from the developer's own AWS setup."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # fsspec keeps one filesystem per set of arguments, whatever the environment was when
    # it was made: start and end with none, so no test sees another's endpoint.
    S3FileSystem.clear_instance_cache()
    yield moto_endpoint
    S3FileSystem.clear_instance_cache()


@pytest.fixture
def bucket(s3_env: str) -> str:
    name = f"xmas-{uuid.uuid4().hex[:16]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_url(bucket: str) -> str:
    return f"s3://{bucket}/{PREFIX}"


def _folder_drop(root: Path) -> Drop:
    def drop(relative: str, body: bytes) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    return drop


def _bucket_drop(bucket: str) -> Drop:
    def drop(relative: str, body: bytes) -> None:
        boto3.client("s3").put_object(Bucket=bucket, Key=f"{PREFIX}/{relative}", Body=body)

    return drop


@pytest.fixture(params=["folder", "s3"])
def inbox_and_drop(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Inbox, Drop]:
    """The same inbox tests on a local folder and on a bucket."""
    if request.param == "folder":
        root = tmp_path / "inbox"
        return Inbox(root), _folder_drop(root)
    bucket_name = request.getfixturevalue("bucket")
    return Inbox(f"s3://{bucket_name}/{PREFIX}"), _bucket_drop(bucket_name)


def keys(bucket: str) -> list[str]:
    """Every object in the bucket, read with boto3 (not through the code under test)."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def stored_body(bucket: str, key: str) -> bytes:
    return bytes(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def signup(email: str = "zoe@example.com") -> dict[str, Any]:
    return {
        "email": email,
        "first_name": "Zoë",
        "assessment_score": 52,
        "red_systems": 2,
        "orange_systems": 1,
    }


# -- what a folder and a bucket share ---------------------------------------------------------


def test_write_then_read_round_trip(inbox_and_drop: tuple[Inbox, Drop]) -> None:
    inbox, _ = inbox_and_drop
    body = json.dumps(signup(), ensure_ascii=False).encode() + b"\n"
    before, writing = utc_day(), datetime.now(UTC)
    item = inbox.write("signups", body)
    written = datetime.now(UTC)
    assert NAME.match(item.name)
    assert item.day in (before, utc_day())
    assert item.path == str(UPath(inbox.root) / "signups" / item.day / item.name)
    assert inbox.read(item) == body
    (listed,) = inbox.files("signups", item.day)
    # The listing has the store's arrival time; everything else is what `write` said.
    assert replace(listed, received_at=item.received_at) == item
    # The store's clock, while the write was under way (S3 keeps whole seconds). Not a
    # bound on the wall time between: on a loaded machine that can be anything.
    second = timedelta(seconds=1)
    assert writing - second <= listed.received_at <= written + second
    assert inbox.read(listed) == body


def test_days_and_files_are_ordered_and_ignore_what_is_not_the_layout(
    inbox_and_drop: tuple[Inbox, Drop],
) -> None:
    inbox, drop = inbox_and_drop
    written: dict[str, list[str]] = {}
    for day in ("2025-12-03", "2025-12-01", "2025-12-02", "2025-12-01"):
        moment = datetime.fromisoformat(f"{day}T12:00:00+00:00")
        item = inbox.write("signups", f'{{"day": "{day}"}}'.encode(), received_at=moment)
        written.setdefault(day, []).append(item.name)
    drop("signups/2025-12-01/manual.json", b"{}")  # a file dropped in by hand counts
    drop("signups/2025-12-01/notes.txt", b"not an event")
    drop("signups/2025-12-01/nested/deeper.json", b"{}")
    drop("signups/not-a-day/x.json", b"{}")
    drop("signups/2025-12-4/x.json", b"{}")
    drop("signups/2025-12-05", b"a file where a day folder would be")
    drop(".tmp/leftover.json", b"{}")

    assert inbox.days("signups") == ["2025-12-01", "2025-12-02", "2025-12-03"]
    names = [item.name for item in inbox.files("signups", "2025-12-01")]
    assert names == sorted([*written["2025-12-01"], "manual.json"])
    assert [item.name for item in inbox.files("signups", "2025-12-03")] == written["2025-12-03"]
    assert inbox.days("bookings") == []
    assert inbox.files("signups", "2030-01-01") == []
    assert inbox.files("email-events", "2025-12-01") == []


def test_fingerprint_changes_when_a_file_is_added_and_not_otherwise(
    inbox_and_drop: tuple[Inbox, Drop],
) -> None:
    inbox, _ = inbox_and_drop
    day = "2025-12-01"
    at = datetime.fromisoformat(f"{day}T08:00:00+00:00")
    assert inbox.fingerprint("signups", day) == ""
    first = inbox.write("signups", b'{"n": 1}', received_at=at)
    before = inbox.fingerprint("signups", day)
    assert before != ""
    inbox.read(first)
    inbox.write("signups", b'{"n": 2}', received_at=at + timedelta(days=1))  # another day
    inbox.write("bookings", b'{"n": 3}', received_at=at)  # another kind
    assert inbox.fingerprint("signups", day) == before
    inbox.write("signups", b'{"n": 4}', received_at=at)
    after = inbox.fingerprint("signups", day)
    assert after not in ("", before)
    assert inbox.fingerprint("signups", day) == after


def test_what_another_writer_adds_is_seen_at_once(inbox_and_drop: tuple[Inbox, Drop]) -> None:
    """Another process or host writes to the same inbox: the next listing shows it (no
    listing is served from a cache)."""
    inbox, drop = inbox_and_drop
    inbox.write("signups", b"{}", received_at=datetime.fromisoformat("2025-12-01T08:00:00+00:00"))
    days, before = inbox.days("signups"), inbox.fingerprint("signups", "2025-12-01")
    drop(f"signups/2025-12-01/{'1' * 20}-{'b' * 32}.json", b"{}")
    drop(f"signups/2025-12-02/{'2' * 20}-{'c' * 32}.json", b"{}")
    assert inbox.fingerprint("signups", "2025-12-01") != before
    assert len(inbox.files("signups", "2025-12-01")) == 2
    assert inbox.days("signups") == [*days, "2025-12-02"]


def test_200_concurrent_writes_give_200_intact_files(inbox_and_drop: tuple[Inbox, Drop]) -> None:
    inbox, _ = inbox_and_drop
    bodies = [json.dumps({"n": i, "pad": "x" * (i * 37)}).encode() for i in range(200)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        items = list(pool.map(lambda body: inbox.write("signups", body), bodies))
    assert len({item.name for item in items}) == 200
    day = items[0].day  # every write lands in today's folder (or, at midnight, tomorrow's)
    listed = [item for d in sorted({i.day for i in items}) for item in inbox.files("signups", d)]
    assert len(listed) == 200 and {i.name for i in listed} == {i.name for i in items}
    assert sorted(inbox.read(item) for item in listed) == sorted(bodies)
    assert day in inbox.days("signups")


def test_forgetting_removes_every_file_holding_the_address_and_only_those(
    inbox_and_drop: tuple[Inbox, Drop],
) -> None:
    inbox, drop = inbox_and_drop
    old = datetime(2025, 11, 3, 12, tzinfo=UTC)
    inbox.write_json("signups", signup("Gone@Example.com"), received_at=old)
    inbox.write_json("signups", signup("kept@example.com"), received_at=old)
    inbox.write_json("signups", signup("agone@example.com"))  # a look-alike stays
    booking = {"payload": {"attendees": [{"email": "GONE@example.com", "name": "G"}]}}
    inbox.write_json("bookings", booking)
    inbox.write_json("email-events", {"type": "email.opened", "data": {"to": ["gone@example.com"]}})
    drop("signups/2025-11-04/broken.json", b'{"email": "gone@example.com", oops')

    removed = forget_inbox(inbox, "gone@example.com")

    assert removed == {"signups": 2, "bookings": 1, "email-events": 1}
    left = [
        inbox.read(item).decode().lower()
        for kind in ("signups", "bookings", "email-events")
        for day in inbox.days(kind)
        for item in inbox.files(kind, day)
    ]
    assert len(left) == 2 and not any('"gone@example.com"' in text for text in left)
    assert forget_inbox(inbox, "gone@example.com") == {}
    # A whole old day goes at once (retention).
    assert inbox.remove_day("signups", "2025-11-03") == 1
    assert inbox.files("signups", "2025-11-03") == []


def test_an_unknown_kind_is_refused(inbox_and_drop: tuple[Inbox, Drop]) -> None:
    inbox, _ = inbox_and_drop
    with pytest.raises(ValueError, match="unknown inbox kind"):
        inbox.write("invoices", b"{}")


# -- the bucket's own guarantees --------------------------------------------------------------


def test_an_event_is_one_object_under_its_final_key(bucket: str, s3_url: str) -> None:
    body = b'{"email": "a@example.com"}'
    item = Inbox(s3_url).write("signups", body)
    # One PUT: no temporary object, nothing under .tmp/.
    assert keys(bucket) == [f"{PREFIX}/{item.ref}"]
    assert item.path == f"{s3_url}/{item.ref}"
    assert stored_body(bucket, f"{PREFIX}/{item.ref}") == body


def test_arrival_time_is_the_objects_last_modified_in_utc(bucket: str, s3_url: str) -> None:
    inbox = Inbox(s3_url)
    before = datetime.now(UTC)
    item = inbox.write("signups", b"{}")
    after = datetime.now(UTC)
    (listed,) = inbox.files("signups", item.day)
    head = boto3.client("s3").head_object(Bucket=bucket, Key=f"{PREFIX}/{listed.ref}")
    assert listed.received_at == head["LastModified"]
    assert listed.received_at.tzinfo is UTC
    # LastModified has one-second resolution.
    assert before - timedelta(seconds=1) <= listed.received_at <= after + timedelta(seconds=1)


def test_an_object_replaced_in_place_changes_the_fingerprint(
    bucket: str, s3_url: str, clock: MovableClock
) -> None:
    inbox = Inbox(s3_url)
    item = inbox.write("signups", b'{"email": "typo@example"}')
    before = inbox.fingerprint("signups", item.day)
    # Fixing a bad file by hand: a new PUT of the same key a second later.
    clock.advance(1.1)  # LastModified has a resolution of one second
    _bucket_drop(bucket)(item.ref, b'{"email": "fixed@example.com"}')
    assert inbox.fingerprint("signups", item.day) != before
    assert inbox.read(inbox.files("signups", item.day)[0]) == b'{"email": "fixed@example.com"}'


def test_a_retried_put_finds_its_own_object_and_never_overwrites(bucket: str, s3_url: str) -> None:
    store = ObjectStore(UPath(s3_url))
    folder = UPath(s3_url) / "signups" / "2025-12-01"
    key = f"{PREFIX}/signups/2025-12-01/00000000000000000001-{'a' * 32}.json"
    name = key.rsplit("/", 1)[1]
    # The first attempt landed but its answer was lost; the retry must count as done.
    store.put(folder, name, b'{"n": 1}')
    store.put(folder, name, b'{"n": 1}')
    # Another body under a taken key is refused, and the object keeps the first one.
    with pytest.raises(FileExistsError):
        store.put(folder, name, b'{"n": 2}')
    assert stored_body(bucket, key) == b'{"n": 1}'
    assert keys(bucket) == [key]


def test_a_missing_bucket_fails_the_write_as_an_oserror(s3_env: str) -> None:
    with pytest.raises(OSError):
        Inbox(f"s3://xmas-missing-{uuid.uuid4().hex[:8]}/inbox").write("signups", b"{}")


def test_an_unreachable_store_fails_the_write_as_an_oserror(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    S3FileSystem.clear_instance_cache()
    with pytest.raises(OSError, match="could not store"):
        Inbox("s3://xmas-anywhere/inbox").write("signups", b"{}")


# -- the intake and ingestion on a bucket -----------------------------------------------------


def test_the_intake_stores_a_signup_byte_for_byte_and_ingestion_reads_it(
    bucket: str, s3_url: str, tmp_path: Path
) -> None:
    raw = json.dumps(signup(), ensure_ascii=False, indent=1).encode()
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=s3_url)))
    response = client.post(SIGNUP_URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    # The signup, and beside it the request's details (double opt-in's consent records).
    (key, request) = keys(bucket)
    assert request == key + ".request"
    assert json.loads(stored_body(bucket, request))["ip"] == "testclient"
    _, kind, day, name = key.split("/")
    assert (kind, name) == ("signups", f"{event_id}.json")
    assert stored_body(bucket, key) == raw

    batch = read_signup_day(Inbox(s3_url), day)
    assert batch.rejected == []
    (event,) = batch.events
    assert event.signup.email == "zoe@example.com"
    assert event.signup.first_name == "Zoë"
    head = boto3.client("s3").head_object(Bucket=bucket, Key=key)
    assert event.received_at == head["LastModified"]


def test_the_intake_answers_503_when_the_bucket_cannot_take_the_event(
    s3_env: str, tmp_path: Path
) -> None:
    url = f"s3://xmas-missing-{uuid.uuid4().hex[:8]}/inbox"
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=url)))
    body = json.dumps(signup()).encode()
    response = client.post(SIGNUP_URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 503


def test_the_folder_inbox_leaves_no_temporary_file(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    item = inbox.write("signups", b"{}")
    assert os.listdir(tmp_path / "inbox" / ".tmp") == []
    (listed,) = inbox.files("signups", item.day)
    mtime = (tmp_path / "inbox" / listed.ref).stat().st_mtime
    assert listed.received_at == datetime.fromtimestamp(mtime, UTC)
