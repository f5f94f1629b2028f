"""`xmas-pipeline notion setup`: add the properties the pipeline needs to the databases."""

from __future__ import annotations

from dataclasses import dataclass, field

from xmas_pipeline.adapters.notion.http import DataSource, fetch_data_source
from xmas_pipeline.adapters.notion.schema import check_properties
from xmas_pipeline.adapters.notion.workspace import TEMPLATES, NotionWorkspace
from xmas_pipeline.core.campaign import Campaign, load_campaign


@dataclass
class SetupReport:
    """What `setup_notion` changed: properties added per database, and type conflicts."""

    added: dict[str, list[str]] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.added.values())

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        lines: list[str] = []
        for role in self.checked:
            added = self.added.get(role) or []
            lines.append(f"{role}: " + (f"added {', '.join(added)}" if added else "complete"))
            for conflict in self.conflicts.get(role) or []:
                lines.append(f"{role}: cannot fix {conflict}; change its type in Notion")
        return "\n".join(lines)


def setup_notion(
    store: NotionWorkspace, campaign: Campaign | None = None, templates_db_id: str | None = None
) -> SetupReport:
    """Add the properties the pipeline needs and the databases lack (`xmas-pipeline notion
    setup`). Existing properties are never changed; a wrong type is reported as a conflict."""
    campaign = campaign or load_campaign()
    report = SetupReport()
    roles = dict(store.database_ids)
    if templates_db_id:
        roles[TEMPLATES] = templates_db_id
    for role, database_id in roles.items():
        source = fetch_data_source(store.api, role, database_id)
        result = check_properties(source.properties, store.specs(role, campaign))
        report.checked.append(role)
        report.added[role] = [s.name for s in result.missing]
        if result.conflicts:
            report.conflicts[role] = result.conflicts
        if result.missing:
            updated = store.api.update_data_source(
                source.id, {s.name: s.create_config() for s in result.missing}
            )
            source = DataSource(role, database_id, updated)  # the reply is the new schema
        store.remember_source(role, source)
    return report
