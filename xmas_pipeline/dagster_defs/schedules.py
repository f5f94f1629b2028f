"""A campaign's schedules: `<prefix>__send_schedule` sends what is due, under that
campaign's own pause switch (pausing one campaign never stops another);
`<prefix>__funnel_schedule` recounts its funnel."""

import dagster as dg

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs.jobs import FUNNEL_JOB, SEND_JOB, SEND_TAG, deliveries_config
from xmas_pipeline.dagster_defs.names import campaign_name
from xmas_pipeline.dagster_defs.resources import StateStoreResource
from xmas_pipeline.settings import Settings

SEND_SCHEDULE = "send_schedule"
FUNNEL_SCHEDULE = "funnel_schedule"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def campaign_definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    slug = campaign.slug
    job_name = campaign_name(slug, SEND_JOB)
    pause_job = campaign_name(slug, "pause_sending")

    @dg.schedule(
        name=campaign_name(slug, SEND_SCHEDULE),
        job_name=job_name,
        cron_schedule=settings.effective_send_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Sends everything of {campaign.name} due, on its cadence. To pause the campaign "
            f"use {pause_job}: stopping this schedule stops only these runs (new signups are "
            "still welcomed)."
        ),
    )
    def send_schedule(  # type: ignore[no-untyped-def]
        context: dg.ScheduleEvaluationContext, store: StateStoreResource
    ):
        state = store.send_switch().state(campaign)
        if state.paused:
            return dg.SkipReason(f"sending is {state.describe()}")
        in_flight = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1
        )
        if in_flight:
            return dg.SkipReason(f"send run {in_flight[0].run_id[:8]} is still in progress")
        when = context.scheduled_execution_time
        return dg.RunRequest(
            run_key=when.isoformat(),
            partition_key=when.strftime("%Y-%m-%d"),
            run_config=deliveries_config(slug, catch_up=True),
            tags={SEND_TAG: "1"},
        )

    funnel_schedule = dg.ScheduleDefinition(
        name=campaign_name(slug, FUNNEL_SCHEDULE),
        job_name=campaign_name(slug, FUNNEL_JOB),
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Recounts {campaign.name}'s funnel every hour. It only reads: stopping it does "
            f"not pause the campaign (that is {pause_job})."
        ),
    )
    return dg.Definitions(schedules=[send_schedule, funnel_schedule])
