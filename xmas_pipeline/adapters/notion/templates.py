"""Email templates kept in a Notion database (`NOTION_TEMPLATES_DB_ID`).

Each page is one template: `Template Name` (the title, e.g. `email-2` or
`email-2.critical`), `Subject Line` and `Email Body HTML` (rich_text; Notion stores long
text as pieces of at most 2,000 characters, so every piece is joined), and `Campaign` (a
select: the campaign's `notion_select`). They override the campaign's own templates of the
same name. A page naming no campaign (and every page of a database without the property,
as before campaigns) is the deployment's default campaign's only; one naming a campaign
wins over it there.

Sending never reads Notion: `notion_edits_sensor` copies the templates into the SQL store
(changed pages each tick, the whole database now and then) and a send run reads them
there. The rules are here: a page without a name, subject or body is a draft and is
skipped (a half-written draft must not replace a working shipped template); of two pages
with one name for one campaign, the one edited last wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from xmas_pipeline.adapters.notion.edits import changed_pages, edited_at
from xmas_pipeline.adapters.notion.http import NotionApi
from xmas_pipeline.adapters.notion.props import page_values
from xmas_pipeline.adapters.notion.schema import TemplateProperties
from xmas_pipeline.adapters.notion.workspace import TEMPLATES, NotionWorkspace
from xmas_pipeline.core.ports import NotionTemplate

log = logging.getLogger("xmas_pipeline.notion")


def watch_templates(notion: NotionWorkspace, templates_db_id: str) -> None:
    """Add the Templates DB to the databases this client checks and caches the schema of."""
    notion.database_ids[TEMPLATES] = templates_db_id


def template_of(page: dict[str, Any], props: TemplateProperties) -> NotionTemplate | None:
    """The template a page holds; None for a draft (no name, subject or body) or a page in
    the trash."""
    values = page_values(page)
    name = str(values.get(props.name) or "").strip()
    subject = str(values.get(props.subject) or "").strip()
    body = str(values.get(props.body) or "")
    if page.get("in_trash") or page.get("archived"):
        return None
    if not name or not subject or not body.strip():
        log.warning(
            "Notion template %r skipped: it needs a name, a subject and a body", name or "?"
        )
        return None
    campaign = str(values.get(props.campaign) or "").strip()
    return NotionTemplate(
        name=name,
        page_id=str(page["id"]),
        subject=subject,
        html=body,
        edited_at=edited_at(page),
        campaign=campaign,
    )


def latest_by_name(templates: Iterable[NotionTemplate]) -> dict[str, NotionTemplate]:
    """One template per campaign and name, by `NotionTemplate.key`: the one edited last
    (then the greater page id, so the choice is the same on every read)."""
    chosen: dict[str, NotionTemplate] = {}
    for template in templates:
        other = chosen.get(template.key)
        if other is not None:
            log.warning(
                "two Notion templates are named %r for one campaign; using the one edited last",
                template.name,
            )
            if (other.edited_at, other.page_id) > (template.edited_at, template.page_id):
                continue
        chosen[template.key] = template
    return chosen


def read_notion_templates(
    api: NotionApi, data_source_id: str, props: TemplateProperties
) -> dict[str, NotionTemplate]:
    """Every template in the database, by `NotionTemplate.key` (1 request per 100 pages)."""
    pages = changed_pages(api, data_source_id, None)
    return latest_by_name(t for t in (template_of(p, props) for p in pages) if t is not None)
