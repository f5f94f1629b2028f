"""Templates kept in Notion: every rich_text piece joined, overriding the shipped ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xmas_pipeline.adapters.notion.http import NotionApi
from xmas_pipeline.adapters.notion.templates import load_notion_templates
from xmas_pipeline.core.ports import StoreSchemaError
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.samples import segment_sample
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import busos_workspace


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


def test_templates_come_from_notion_and_override_the_shipped_ones(fake: FakeNotion) -> None:
    ws = busos_workspace(fake, templates=True)
    assert ws.templates
    body = "<p>Hi {{ name }},</p>" + "<p>" + "x" * 4500 + "</p>" + "<p>{{ business }}</p>"
    fake.add_row(
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
    fake.reset_counts()
    templates = load_notion_templates(ws.client(), ws.templates)
    assert fake.total == 3  # database, data source, one query
    assert set(templates) == {"email-2.critical"}
    found = templates["email-2.critical"]
    assert found.origin == "notion" and found.html == body
    assert found.subject == "{{ name }}, your red systems"

    shipped = load_template_dir()
    renderer = Renderer({**shipped, **templates})
    rendered = renderer.render(
        "email-2", "CRITICAL", {**segment_sample("CRITICAL"), "name": "Jo", "business": "Jo's"}
    )
    assert rendered.subject == "Jo, your red systems"
    assert "Jo&#39;s" in rendered.html and "x" * 4500 in rendered.html


def test_a_bare_api_client_works_and_missing_properties_are_named(fake: FakeNotion) -> None:
    db = fake.add_database(
        "Templates", {"Template Name": {"title": {}}, "Subject Line": "rich_text"}
    )
    api = NotionApi(fake.token, fake.base_url, rate_per_s=float("inf"))
    with pytest.raises(StoreSchemaError) as caught:
        load_notion_templates(api, db)
    assert caught.value.missing == {"Templates DB": ["Email Body HTML"]}
