"""Sequences: signups -> contacts and email sequences in the store; the templates."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from xmas_pipeline.alerting import send_critical_alerts
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.funnel import steps_reached
from xmas_pipeline.core.render import Renderer, segment_sample
from xmas_pipeline.core.segments import ALL_SEGMENTS
from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.dagster_defs.ingestion import OWNERS
from xmas_pipeline.dagster_defs.metadata import (
    email_preview,
    md_table,
    reached_metadata,
    segment_counts,
)
from xmas_pipeline.dagster_defs.partitions import daily_partitions
from xmas_pipeline.dagster_defs.resources import (
    AlertResource,
    CampaignResource,
    StateStoreResource,
)


def events_from_frame(frame: pd.DataFrame) -> list[SignupEvent]:
    if frame.empty:
        return []
    fields = list(Signup.model_fields)
    return [
        SignupEvent(
            signup=Signup.model_validate({f: row[f] for f in fields}),
            received_at=pd.Timestamp(row["received_at"]).to_pydatetime(),
            source=str(row["source"]),
        )
        for row in frame.to_dict("records")
    ]


def template_bases(campaign: Campaign) -> list[str]:
    return [s.template for s in campaign.steps] + [r.template for r in campaign.reminders]


def sample_contexts(campaign: Campaign) -> dict[str, dict]:
    from xmas_pipeline.core.context import reminder_context

    contexts: dict[str, dict] = {}
    for segment in ALL_SEGMENTS:
        fields = {**segment_sample(segment), "segment": segment.value}
        contexts[segment] = reminder_context(
            fields,
            campaign,
            start=datetime(2025, 12, 9, 19, 0, tzinfo=UTC),
            time_zone="America/Toronto",
            meeting_url="https://cal.com/video/sample-meeting",
            booking_uid="sample-booking",
            unsubscribe_url="https://example.com/unsubscribe?token=sample",
        )
    return contexts


def build_sequences(campaign: Campaign) -> dict[str, list]:
    partitions = daily_partitions(campaign)

    @dg.asset(
        group_name="sequences",
        kinds={"python", "sql"},
        owners=OWNERS,
        partitions_def=partitions,
        description=(
            "Contacts and their email sequences in the state store (Notion's Email Sequence "
            "DB, or SQL). A new contact starts the sequence; a re-delivered signup changes "
            "nothing; a newer assessment refreshes the profile but never restarts the clock."
        ),
    )
    def email_sequences(
        context: dg.AssetExecutionContext,
        signups: pd.DataFrame,
        store: StateStoreResource,
        campaign_config: CampaignResource,
        alerts: AlertResource,
    ) -> dg.MaterializeResult:
        camp = campaign_config.campaign
        backend = store.get()
        backend.prepare(camp)
        events = events_from_frame(signups)
        report = backend.upsert_signups(camp, events)
        alert_meta: dict[str, object] = {}
        if alerts.webhook_url:
            sent = send_critical_alerts(
                events, campaign_name=camp.name, url=alerts.webhook_url, ledger=alerts.ledger()
            )
            for key, reason in sent.failed:
                context.log.warning(f"CRITICAL alert for {key} not delivered: {reason}")
            alert_meta = {
                "critical alerts sent": len(sent.sent),
                "critical alerts failed": len(sent.failed),
            }
        segments = segment_counts(signups.get("segment", pd.Series(dtype="object")))
        # Campaign-wide: where every sequence stands now (last email sent), per segment.
        reached = steps_reached(backend.load_sequences(camp), len(camp.steps))
        context.log.info(
            f"{len(report.created)} new sequences, {len(report.updated)} refreshed, "
            f"{len(report.unchanged)} unchanged"
        )
        return dg.MaterializeResult(
            metadata={
                "new sequences": len(report.created),
                "refreshed": len(report.updated),
                "unchanged": len(report.unchanged),
                "no CRM contact": len(report.contact_missing),
                "store": store.backend,
                **{f"signups {k}": v for k, v in segments.items()},
                **alert_meta,
                "sequences": int(reached["total"].sum()),
                **reached_metadata(reached),
            }
        )

    @dg.asset(
        group_name="sequences",
        kinds={"python"},
        owners=OWNERS,
        description=(
            "The email templates (shipped files, overridden by the Notion templates DB when "
            "configured), each rendered for each segment with a sample contact so a change "
            "is reviewed here before it is sent."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "every_template_renders",
                asset="templates",
                blocking=True,
                description=(
                    "Every template renders for every segment with no unknown variable; "
                    "a failure stops the send run before anything is sent."
                ),
            )
        ],
    )
    def templates(store: StateStoreResource, campaign_config: CampaignResource):  # type: ignore[no-untyped-def]
        camp = campaign_config.campaign
        sources = store.templates()
        renderer = Renderer(sources)
        contexts = sample_contexts(camp)
        problems = renderer.check(template_bases(camp), contexts)
        previews: dict[str, dg.MetadataValue] = {}
        for base in template_bases(camp):
            for segment in ALL_SEGMENTS:
                try:
                    rendered = renderer.render(base, segment, contexts[segment])
                except Exception as exc:  # noqa: BLE001 - shown in the check's metadata
                    previews[f"{base} {segment}"] = dg.MetadataValue.md(f"**cannot render**: {exc}")
                    continue
                previews[f"{base} {segment}"] = email_preview(
                    rendered.subject, rendered.template, rendered.text
                )
        yield dg.Output(
            sources,
            metadata={
                "templates": len(sources),
                "sources": md_table(
                    [{"name": s.name, "origin": s.origin} for s in sources.values()],
                    ["name", "origin"],
                ),
                **previews,
            },
        )
        yield dg.AssetCheckResult(
            check_name="every_template_renders",
            passed=not problems,
            metadata={
                "problems": len(problems),
                "details": md_table([{"problem": p} for p in problems], ["problem"]),
            },
        )

    return {"assets": [email_sequences, templates]}
