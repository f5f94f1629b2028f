"""Templates kept in Notion: every rich_text piece joined, drafts skipped, the page edited
last winning a name; read into the store, from which they override the shipped ones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.notion.http import NotionApi
from xmas_pipeline.adapters.notion.schema import TemplateProperties
from xmas_pipeline.adapters.notion.templates import (
    latest_by_name,
    read_notion_templates,
    template_of,
)
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.core.ports import NotionTemplate
from xmas_pipeline.core.render import Renderer
from xmas_pipeline.core.samples import segment_sample
from xmas_pipeline.dagster_defs.resources import StateStoreResource
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import busos_workspace

PROPS = TemplateProperties()
T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        server.freeze(T0)
        yield server


def test_templates_come_from_notion_and_override_the_shipped_ones(
    fake: FakeNotion, tmp_path: Path
) -> None:
    ws = busos_workspace(fake, templates=True)
    assert ws.templates
    body = "<p>Hi {{ name }},</p>" + "<p>" + "x" * 4500 + "</p>" + "<p>{{ business }}</p>"
    page_id = fake.add_row(
        ws.templates,
        {
            "Template Name": "email-2.critical",
            "Subject Line": "{{ name }}, your red systems",
            "Email Body HTML": body,  # stored as three pieces of at most 2,000 characters
        },
    )
    fake.add_row(
        ws.templates, {"Template Name": "draft", "Subject Line": "", "Email Body HTML": ""}
    )
    api = NotionApi(fake.token, fake.base_url, rate_per_s=float("inf"))
    fake.reset_counts()
    templates = read_notion_templates(api, fake.data_source_id(ws.templates), PROPS)
    assert fake.total == 1  # one query: the schema is the caller's (cached by the sync)
    assert set(templates) == {"email-2.critical"}
    found = templates["email-2.critical"]
    assert found.html == body and found.page_id == page_id and found.edited_at == T0
    assert found.subject == "{{ name }}, your red systems"

    # Sending reads them from the store, never from Notion.
    url = f"sqlite:///{tmp_path / 'state.db'}"
    SqlNotionPages(url).save_notion_templates(templates.values())
    sources = StateStoreResource(database_url=url).templates()
    assert sources["email-2.critical"].origin == "notion"
    rendered = Renderer(sources).render(
        "email-2", "CRITICAL", {**segment_sample("CRITICAL"), "name": "Jo", "business": "Jo's"}
    )
    assert rendered.subject == "Jo, your red systems"
    assert "Jo&#39;s" in rendered.html and "x" * 4500 in rendered.html
    assert rendered.preheader  # Notion keeps none: the shipped template's is kept


def test_drafts_and_trashed_pages_hold_no_template(fake: FakeNotion) -> None:
    ws = busos_workspace(fake, templates=True)
    assert ws.templates
    full = {"Template Name": "email-3", "Subject Line": "Hi", "Email Body HTML": "<p>x</p>"}
    for missing in ("Template Name", "Subject Line", "Email Body HTML"):
        page_id = fake.add_row(ws.templates, {**full, missing: "  "})
        assert template_of(fake.raw_page(page_id), PROPS) is None
    page_id = fake.add_row(ws.templates, full)
    assert template_of(fake.raw_page(page_id), PROPS) is not None
    fake.edit_row(page_id, {}, in_trash=True)
    assert template_of(fake.raw_page(page_id), PROPS) is None


def test_the_page_edited_last_wins_a_name() -> None:
    def made(page_id: str, minutes: int) -> NotionTemplate:
        return NotionTemplate("email-1", page_id, "s", "h", T0 + timedelta(minutes=minutes))

    chosen = latest_by_name([made("b", 5), made("a", 9), made("c", 1)])
    assert chosen["email-1"].page_id == "a"
    tie = latest_by_name([made("b", 5), made("a", 5)])
    assert tie["email-1"].page_id == "b"  # the same on every read
