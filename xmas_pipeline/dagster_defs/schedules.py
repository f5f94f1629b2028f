"""The schedules: `send_schedule` sends what is due; `funnel_schedule` recounts the funnel."""

import dagster as dg

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs.jobs import FUNNEL_JOB, SEND_JOB, SEND_TAG
from xmas_pipeline.dagster_defs.resources import CampaignResource, StateStoreResource
from xmas_pipeline.settings import Settings

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    @dg.schedule(
        name="send_schedule",
        job_name=SEND_JOB,
        cron_schedule=settings.effective_send_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Sends everything due, on the campaign's cadence. To pause the campaign use "
            "pause_sending: stopping this schedule stops only these runs (new signups are "
            "still welcomed)."
        ),
    )
    def send_schedule(  # type: ignore[no-untyped-def]
        context: dg.ScheduleEvaluationContext,
        store: StateStoreResource,
        campaign_config: CampaignResource,
    ):
        state = store.send_switch().state(campaign_config.campaign)
        if state.paused:
            return dg.SkipReason(f"sending is {state.describe()}")
        in_flight = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=SEND_JOB, statuses=IN_FLIGHT), limit=1
        )
        if in_flight:
            return dg.SkipReason(f"send run {in_flight[0].run_id[:8]} is still in progress")
        when = context.scheduled_execution_time
        return dg.RunRequest(
            run_key=when.isoformat(),
            partition_key=when.strftime("%Y-%m-%d"),
            run_config={"ops": {"deliveries": {"config": {"catch_up": True}}}},
            tags={SEND_TAG: "1"},
        )

    funnel_schedule = dg.ScheduleDefinition(
        name="funnel_schedule",
        job_name=FUNNEL_JOB,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Recounts the funnel every hour. It only reads: stopping it does not pause the "
            "campaign (that is send_schedule)."
        ),
    )
    return dg.Definitions(schedules=[send_schedule, funnel_schedule])
