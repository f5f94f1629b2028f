"""The fake Notion API answers like Notion: these tests pin the behaviour the store relies on,
through the real notion-client SDK."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from notion_client import Client
from notion_client.errors import APIResponseError, HTTPResponseError
from notion_client.helpers import collect_paginated_api

from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import busos_workspace


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


def sdk(fake: FakeNotion, **options: object) -> Client:
    return Client(auth=fake.token, base_url=fake.base_url, retry=False, **options)


def error_of(call: object) -> HTTPResponseError:
    with pytest.raises(HTTPResponseError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_database_gives_its_data_source_and_schema(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    database = client.databases.retrieve(database_id=ws.sequences)
    assert database["object"] == "database"
    [source] = database["data_sources"]
    schema = client.data_sources.retrieve(data_source_id=source["id"])
    assert schema["object"] == "data_source"
    assert schema["properties"]["Email 3 Sent"]["type"] == "date"
    assert schema["properties"]["Name"]["type"] == "title"
    ids = [prop["id"] for prop in schema["properties"].values()]
    assert len(set(ids)) == len(ids) and schema["properties"]["Name"]["id"] == "title"


def test_auth_and_version_are_required(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    wrong = Client(auth="secret_wrong", base_url=fake.base_url, retry=False)
    error = error_of(lambda: wrong.databases.retrieve(database_id=ws.sequences))
    assert (error.status, error.code) == (401, "unauthorized")

    url = f"{fake.base_url}/v1/databases/{ws.sequences}"
    reply = httpx.get(url, headers={"Authorization": f"Bearer {fake.token}"})
    assert reply.status_code == 400
    assert reply.json()["code"] == "missing_version"
    assert reply.json()["object"] == "error"
    old = httpx.get(
        url, headers={"Authorization": f"Bearer {fake.token}", "Notion-Version": "2022-06-28"}
    )
    assert old.status_code == 400


def test_unknown_properties_and_wrong_types_are_validation_errors(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    source = fake.data_source_id(ws.sequences)
    parent = {"type": "data_source_id", "data_source_id": source}

    error = error_of(
        lambda: client.pages.create(parent=parent, properties={"Emial": {"email": "a@x.com"}})
    )
    assert (error.status, error.code) == (400, "validation_error")
    assert str(error) == "Emial is not a property that exists."

    error = error_of(
        lambda: client.pages.create(parent=parent, properties={"Email 1 Sent": {"number": 5}})
    )
    assert str(error) == "Email 1 Sent is expected to be date."

    error = error_of(
        lambda: client.pages.create(parent=parent, properties={"Red Systems": {"number": "2"}})
    )
    assert error.code == "validation_error" and "number" in str(error)

    bad_date = {"Signup Date": {"date": {"start": "yesterday"}}}
    error = error_of(lambda: client.pages.create(parent=parent, properties=bad_date))
    assert "ISO 8601" in str(error)
    assert fake.rows(ws.sequences) == []  # nothing was half-written


def test_rich_text_pieces_are_limited_to_2000_characters(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    parent = {"data_source_id": fake.data_source_id(ws.sequences)}

    def rich(*pieces: str) -> dict[str, object]:
        return {"rich_text": [{"type": "text", "text": {"content": p}} for p in pieces]}

    error = error_of(
        lambda: client.pages.create(parent=parent, properties={"Last Error": rich("x" * 2001)})
    )
    assert "text.content.length should be ≤ `2000`, instead was `2001`" in str(error)
    # Notion counts UTF-16 units: 1,000 emoji are 2,000 units, 1,001 are too many.
    client.pages.create(parent=parent, properties={"Last Error": rich("😀" * 1000)})
    error = error_of(
        lambda: client.pages.create(parent=parent, properties={"Last Error": rich("😀" * 1001)})
    )
    assert "instead was `2002`" in str(error)
    page = client.pages.create(parent=parent, properties={"Last Error": rich("a" * 2000, "b")})
    assert len(page["properties"]["Last Error"]["rich_text"]) == 2


def test_select_options_are_created_and_status_options_must_exist(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    parent = {"data_source_id": fake.data_source_id(ws.sequences)}
    client.pages.create(parent=parent, properties={"Campaign": {"select": {"name": "Easter"}}})
    schema = client.data_sources.retrieve(data_source_id=fake.data_source_id(ws.sequences))
    names = [o["name"] for o in schema["properties"]["Campaign"]["select"]["options"]]
    assert "Easter" in names
    status_db = fake.add_database("Tasks", {"State": {"status": {"options": [{"name": "Done"}]}}})
    status_parent = {"data_source_id": fake.data_source_id(status_db)}
    error = error_of(
        lambda: client.pages.create(
            parent=status_parent, properties={"State": {"status": {"name": "Maybe"}}}
        )
    )
    assert error.code == "validation_error"


def test_queries_paginate_100_at_most_and_filter(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    for n in range(230):
        fake.add_row(
            ws.sequences,
            {"Email": f"p{n}@x.com", "Campaign": "Christmas 2025" if n % 2 else "BusinessX Canada"},
        )
    source = fake.data_source_id(ws.sequences)
    error = error_of(lambda: client.data_sources.query(data_source_id=source, page_size=101))
    assert "page_size should be ≤ `100`" in str(error)

    first = client.data_sources.query(data_source_id=source, page_size=100)
    assert len(first["results"]) == 100 and first["has_more"] and first["next_cursor"]
    everything = collect_paginated_api(
        client.data_sources.query, data_source_id=source, page_size=100
    )
    assert len(everything) == 230
    christmas = collect_paginated_api(
        client.data_sources.query,
        data_source_id=source,
        filter={"property": "Campaign", "select": {"equals": "Christmas 2025"}},
    )
    assert len(christmas) == 115
    either = client.data_sources.query(
        data_source_id=source,
        filter={
            "or": [
                {"property": "Email", "email": {"equals": "p1@x.com"}},
                {"property": "Email", "email": {"equals": "p2@x.com"}},
            ]
        },
    )
    assert sorted(p["properties"]["Email"]["email"] for p in either["results"]) == [
        "p1@x.com",
        "p2@x.com",
    ]
    error = error_of(
        lambda: client.data_sources.query(
            data_source_id=source, filter={"property": "Nope", "checkbox": {"equals": True}}
        )
    )
    assert str(error) == "Could not find property with name or id: Nope"
    too_deep = {"and": [{"or": [{"and": [{"or": []}]}]}]}
    error = error_of(lambda: client.data_sources.query(data_source_id=source, filter=too_deep))
    assert error.code == "validation_error"


def test_adding_properties_to_a_data_source(fake: FakeNotion) -> None:
    ws = busos_workspace(fake, with_setup=False)
    client = sdk(fake)
    source = fake.data_source_id(ws.sequences)
    reply = client.data_sources.update(
        data_source_id=source,
        properties={"Paused": {"checkbox": {}}, "Delivery Status": {"select": {"options": []}}},
    )
    assert reply["properties"]["Paused"]["type"] == "checkbox"
    assert fake.property_types(ws.sequences)["Delivery Status"] == "select"


def test_rate_limit_answers_429_with_retry_after(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    now = [0.0]
    limited = FakeNotion(rate_limit=3.0, burst=3, clock=lambda: now[0])
    with limited:
        db = limited.add_database("Tiny", {"Flag": "checkbox"})
        client = sdk(limited)
        for _ in range(3):
            client.databases.retrieve(database_id=db)
        error = error_of(lambda: client.databases.retrieve(database_id=db))
        assert isinstance(error, APIResponseError)
        assert (error.status, error.code) == (429, "rate_limited")
        assert error.headers["retry-after"] == "1"
        now[0] += 1 / 3  # one token back after a third of a second
        client.databases.retrieve(database_id=db)
        assert limited.statuses[429] == 1 and limited.statuses[200] == 4
    assert ws.sequences  # the other fake is untouched


def test_faults_can_be_scripted(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake, timeout_ms=200)
    fake.inject("529", retry_after_s=2)
    error = error_of(lambda: client.databases.retrieve(database_id=ws.contacts))
    assert error.status == 529 and error.headers["retry-after"] == "2"
    fake.inject("500", route="POST /v1/pages", applied=True)
    parent = {"data_source_id": fake.data_source_id(ws.contacts)}
    error = error_of(
        lambda: client.pages.create(parent=parent, properties={"email": {"email": "a@x.com"}})
    )
    assert error.status == 500
    assert [r["email"] for r in fake.rows(ws.contacts)] == ["a@x.com"]  # it happened anyway
    assert fake.counts["POST /v1/pages"] == 1
    assert fake.faults_injected == {"529": 1, "500": 1}


# -- timestamp filters (what `notion_edits_sensor` reads changes with) ------------------------

T0 = datetime(2025, 11, 3, 10, 7, 42, 500000, tzinfo=UTC)


def edited(since: str, op: str = "on_or_after", field: str = "last_edited_time") -> dict:
    return {"timestamp": field, field: {op: since}}


def test_timestamps_are_rounded_to_the_minute_and_moved_by_every_write(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    fake.freeze(T0)
    page_id = fake.add_row(ws.contacts, {"email": "a@x.com"})
    page = fake.raw_page(page_id)
    assert page["created_time"] == page["last_edited_time"] == "2025-11-03T10:07:00.000Z"
    fake.advance(timedelta(minutes=3))
    sdk(fake).pages.update(page_id=page_id, properties={"Booking Status": {"select": None}})
    page = fake.raw_page(page_id)
    assert page["created_time"] == "2025-11-03T10:07:00.000Z"
    assert page["last_edited_time"] == "2025-11-03T10:10:00.000Z"
    fake.advance(timedelta(minutes=1))
    fake.edit_row(page_id, {"Booking Status": "Completed"})  # a person, in Notion
    assert fake.raw_page(page_id)["last_edited_time"] == "2025-11-03T10:11:00.000Z"


def test_queries_filter_on_last_edited_and_created_time(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    source = fake.data_source_id(ws.contacts)
    fake.freeze(T0)  # 10:07
    a = fake.add_row(ws.contacts, {"email": "a@x.com"})
    fake.advance(timedelta(minutes=2))  # 10:09
    b = fake.add_row(ws.contacts, {"email": "b@x.com", "Booking Status": "Booked"})
    fake.advance(timedelta(minutes=3))  # 10:12
    fake.edit_row(a, {"Booking Status": "No-Show"})

    def ids(filter: dict, **options: object) -> list[str]:
        pages = collect_paginated_api(
            client.data_sources.query, data_source_id=source, filter=filter, **options
        )
        return [p["id"] for p in pages]

    oldest_edit_first = [{"timestamp": "last_edited_time", "direction": "ascending"}]
    assert ids(edited("2025-11-03T10:09:00Z"), sorts=oldest_edit_first) == [b, a]
    assert ids(edited("2025-11-03T10:09:00Z", "after")) == [a]
    assert ids(edited("2025-11-03T10:12:00Z", "before")) == [b]
    assert ids(edited("2025-11-03T10:09:00.000Z", "on_or_before")) == [b]
    assert ids(edited("2025-11-03T10:12:00+00:00", "equals")) == [a]
    assert ids(edited("2025-11-03")) == [a, b]  # a date alone compares dates
    assert ids(edited("2025-11-03T10:08:00Z", "before", "created_time")) == [a]
    assert ids(edited("2025-11-03T10:09:00Z", field="created_time")) == [b]
    both = {
        "and": [
            edited("2025-11-03T10:08:00Z"),
            {"property": "Booking Status", "select": {"equals": "Booked"}},
        ]
    }
    assert ids(both) == [b]
    either = {"or": [edited("2025-11-03T10:10:00Z"), edited("2025-11-03T10:08:00Z", "before")]}
    assert ids(either) == [a]


def test_bad_timestamp_filters_are_validation_errors(fake: FakeNotion) -> None:
    ws = busos_workspace(fake)
    client = sdk(fake)
    source = fake.data_source_id(ws.contacts)
    cases = [
        ({"timestamp": "updated_time", "updated_time": {"after": "2025-11-03"}}, "timestamp"),
        ({"timestamp": "last_edited_time"}, "last_edited_time should be an object"),
        (edited("2025-11-03", "greater_than"), "greater_than is not a supported operator"),
        (edited("yesterday"), "should be an ISO 8601 date string"),
        ({**edited("2025-11-03"), "created_time": {"after": "2025-11-03"}}, "only `timestamp`"),
        (
            {"timestamp": "created_time", "created_time": {"after": "2025-11-03", "before": "x"}},
            "one operator",
        ),
    ]
    for filter, message in cases:
        error = error_of(
            lambda f=filter: client.data_sources.query(data_source_id=source, filter=f)
        )
        assert (error.status, error.code) == (400, "validation_error")
        assert message in str(error), (filter, str(error))
    # The same inside a compound filter.
    nested = {"and": [edited("never")]}
    error = error_of(lambda: client.data_sources.query(data_source_id=source, filter=nested))
    assert error.code == "validation_error"
