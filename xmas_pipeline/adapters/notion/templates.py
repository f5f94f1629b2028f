"""Email templates kept in a Notion database (`NOTION_TEMPLATES_DB_ID`).

Each page is one template: `Template Name` (the title, e.g. `email-2` or
`email-2.critical`), `Subject Line` and `Email Body HTML` (rich_text; Notion stores long
text as pieces of at most 2,000 characters, so every piece is joined). They override the
shipped templates of the same name. One paginated query per run (plus two requests to
find the data source and check its properties).
"""

from __future__ import annotations

import logging

from xmas_pipeline.adapters.notion.http import NotionApi, fetch_data_source
from xmas_pipeline.adapters.notion.props import page_values
from xmas_pipeline.adapters.notion.schema import (
    TemplateProperties,
    check_properties,
    template_specs,
)
from xmas_pipeline.adapters.notion.workspace import TEMPLATES, NotionWorkspace
from xmas_pipeline.core.ports import StoreSchemaError
from xmas_pipeline.core.render import TemplateSource

log = logging.getLogger("xmas_pipeline.notion")


def load_notion_templates(
    client_or_store: NotionWorkspace | NotionApi,
    templates_db_id: str,
    properties: TemplateProperties | None = None,
) -> dict[str, TemplateSource]:
    """{template name: TemplateSource(origin="notion")} from the templates database.

    Pages without a name, subject or body are skipped with a warning (a half-written draft
    must not replace a working shipped template); of two pages with one name, the one
    edited last wins.
    """
    if isinstance(client_or_store, NotionWorkspace):
        api = client_or_store.api
        props = properties or client_or_store.schema.templates
    else:
        api = client_or_store
        props = properties or TemplateProperties()
    source = fetch_data_source(api, TEMPLATES, templates_db_id)
    result = check_properties(source.properties, template_specs(props))
    if not result.ok:
        raise StoreSchemaError({TEMPLATES: result.problems()})
    pages = sorted(api.query(source.id), key=lambda page: page.get("last_edited_time") or "")
    templates: dict[str, TemplateSource] = {}
    for page in pages:
        values = page_values(page)
        name = str(values.get(props.name) or "").strip()
        subject = str(values.get(props.subject) or "").strip()
        body = str(values.get(props.body) or "")
        if not name or not subject or not body.strip():
            log.warning(
                "Notion template %r skipped: it needs a name, a subject and a body", name or "?"
            )
            continue
        if name in templates:
            log.warning("two Notion templates are named %r; using the one edited last", name)
        templates[name] = TemplateSource(name=name, subject=subject, html=body, origin="notion")
    return templates
