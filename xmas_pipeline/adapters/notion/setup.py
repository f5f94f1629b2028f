"""`xmas-pipeline notion setup`: add the properties the pipeline needs to the databases,
for every campaign given: each campaign's `Campaign` select option (Email Sequence DB,
and the Templates and Email Analytics DBs when configured) and its own CRM status
property (`notion_status_property`) in the shared Contacts DB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xmas_pipeline.adapters.notion.http import DataSource, fetch_data_source
from xmas_pipeline.adapters.notion.schema import PropSpec, check_properties, template_campaign_spec
from xmas_pipeline.adapters.notion.workspace import (
    ANALYTICS,
    SEQUENCES,
    TEMPLATES,
    NotionWorkspace,
)
from xmas_pipeline.core.campaign import Campaign, load_campaign

# Property types whose options a setup may extend (a rich_text "Campaign" takes any text).
OPTION_TYPES = ("select", "multi_select", "status")


@dataclass
class SetupReport:
    """What `setup_notion` changed: properties and select options added per database,
    and type conflicts."""

    added: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)  # "Campaign: Christmas 2026"
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    campaigns: list[str] = field(default_factory=list)  # slugs set up

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.options.values())

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        lines: list[str] = []
        if self.campaigns:
            lines.append(f"campaigns: {', '.join(self.campaigns)}")
        for role in self.checked:
            added = self.added.get(role) or []
            options = self.options.get(role) or []
            said = []
            if added:
                said.append(f"added {', '.join(added)}")
            if options:
                said.append(f"added options {', '.join(options)}")
            lines.append(f"{role}: " + ("; ".join(said) if said else "complete"))
            for conflict in self.conflicts.get(role) or []:
                lines.append(f"{role}: cannot fix {conflict}; change its type in Notion")
        return "\n".join(lines)


def _merged_specs(
    store: NotionWorkspace, role: str, campaigns: Sequence[Campaign]
) -> list[PropSpec]:
    """Every campaign's specs for one database, one per name, their options merged (each
    campaign's own `Campaign` option, say)."""
    merged: dict[str, PropSpec] = {}
    for campaign in campaigns:
        specs = store.specs(role, campaign)
        if role == TEMPLATES:
            specs.append(template_campaign_spec(store.schema.templates, campaign.notion_select))
        for spec in specs:
            known = merged.get(spec.name)
            if known is None:
                merged[spec.name] = spec
            else:
                options = known.options + tuple(o for o in spec.options if o not in known.options)
                merged[spec.name] = PropSpec(known.name, known.kind, options)
    return list(merged.values())


def _campaign_options(
    store: NotionWorkspace, role: str, source: DataSource, campaigns: Sequence[Campaign]
) -> tuple[dict[str, Any], list[str]]:
    """The options each campaign needs on an existing `Campaign` select: the property's
    whole new option list (Notion replaces the list, so the existing ones are kept), and
    what is new."""
    names = {
        SEQUENCES: store.schema.sequences.campaign,
        ANALYTICS: store.schema.analytics.campaign,
        TEMPLATES: store.schema.templates.campaign,
    }
    name = names.get(role)
    found = source.properties.get(name or "")
    if not name or found is None or found.get("type") not in OPTION_TYPES:
        return {}, []
    kind = found["type"]
    if kind == "status":
        return {}, []  # a status's options cannot be added through the API
    existing = list((found.get(kind) or {}).get("options") or [])
    have = {option.get("name") for option in existing}
    new = [c.notion_select for c in campaigns if c.notion_select not in have]
    new = list(dict.fromkeys(new))
    if not new:
        return {}, []
    kept = [{"name": option["name"]} for option in existing if option.get("name")]
    change = {name: {kind: {"options": kept + [{"name": n} for n in new]}}}
    return change, [f"{name}: {n}" for n in new]


def setup_notion(
    store: NotionWorkspace,
    campaign: Campaign | Sequence[Campaign] | None = None,
    templates_db_id: str | None = None,
) -> SetupReport:
    """Add the properties the pipeline needs and the databases lack, for one campaign or
    several (`xmas-pipeline notion setup`). Existing properties are never changed, except
    that a `Campaign` select gains the options of the campaigns given; a wrong type is
    reported as a conflict."""
    if campaign is None:
        campaigns: list[Campaign] = [load_campaign()]
    elif isinstance(campaign, Campaign):
        campaigns = [campaign]
    else:
        campaigns = list(campaign)
    report = SetupReport(campaigns=[c.slug for c in campaigns])
    roles = dict(store.database_ids)
    if templates_db_id:
        roles[TEMPLATES] = templates_db_id
    for role, database_id in roles.items():
        source = fetch_data_source(store.api, role, database_id)
        result = check_properties(source.properties, _merged_specs(store, role, campaigns))
        report.checked.append(role)
        report.added[role] = [s.name for s in result.missing]
        if result.conflicts:
            report.conflicts[role] = result.conflicts
        if result.missing:
            updated = store.api.update_data_source(
                source.id, {s.name: s.create_config() for s in result.missing}
            )
            source = DataSource(role, database_id, updated)  # the reply is the new schema
        change, added = _campaign_options(store, role, source, campaigns)
        if change:
            updated = store.api.update_data_source(source.id, change)
            source = DataSource(role, database_id, updated)
        report.options[role] = added
        store.remember_source(role, source)
    return report
