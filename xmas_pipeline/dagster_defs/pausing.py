"""A campaign's pause switch in the UI: its `<prefix>/send_switch` asset and the
`<prefix>__pause_sending` / `<prefix>__resume_sending` jobs that set it. Each campaign has
its own: pausing one never stops another.

Sending is paused by state in the store, not by the on/off of a schedule: every send path
reads it just before each batch (`services.planning.send_gate`), so a pause stops the
schedule's runs, the welcome sensor's runs and a `deliveries` materialized by hand, even a
run already under way. Backfills and `resend_contact` are explicit requests and go while
paused (their descriptions say so). Resuming catches up with one email per person per run.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import SwitchState
from xmas_pipeline.dagster_defs.metadata import in_group
from xmas_pipeline.dagster_defs.names import campaign_key, campaign_name, prefix_of
from xmas_pipeline.dagster_defs.resources import StateStoreResource
from xmas_pipeline.settings import Settings

SWITCH_ASSET = "send_switch"
PAUSE_JOB = "pause_sending"
RESUME_JOB = "resume_sending"


class SendSwitchConfig(dg.Config):
    """What the launchpad of `pause_sending` / `resume_sending` asks for."""

    pause: bool | None = Field(
        default=None,
        description="true: pause sending; false: resume; leave out to only show the state.",
    )
    reason: str = Field(
        default="",
        description="Why sending is paused (required to pause): shown wherever it is paused.",
    )


def switch_metadata(state: SwitchState) -> dict[str, Any]:
    return {
        "state": "paused" if state.paused else "sending",
        "since": state.since.isoformat(timespec="seconds") if state.since else "",
        "by": state.by,
        "reason": state.reason,
        "summary": state.describe(),
    }


def campaign_definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    slug = campaign.slug
    key = campaign_key(slug, SWITCH_ASSET)

    @dg.asset(
        key=key,
        **in_group(prefix_of(slug)),
        kinds={"sql"},
        description=(
            "Whether this campaign's sending is paused, since when, by whom and why. While "
            "paused nothing is sent by the schedule, the welcome sensor or a deliveries "
            "materialized by hand (a run under way stops before its next batch); backfills "
            "and resend_contact still send. Set it with pause_sending / resume_sending."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "sending_not_paused",
                asset=key,
                description="Warns while sending is paused, with the reason.",
            )
        ],
    )
    def send_switch(
        context: dg.AssetExecutionContext,
        config: SendSwitchConfig,
        store: StateStoreResource,
    ) -> dg.MaterializeResult:
        camp = campaign
        switch = store.send_switch()
        if config.pause is None:
            state = switch.state(camp)
        elif config.pause and not config.reason.strip():
            raise dg.Failure(description="Not paused: give a reason (`reason`) for the pause.")
        else:
            reason = config.reason if config.pause else ""
            state = switch.set(
                camp, paused=config.pause, reason=reason, by=f"run {context.run_id[:8]}"
            )
            context.log.info(f"sending {state.describe()}")
        return dg.MaterializeResult(
            metadata=switch_metadata(state),
            check_results=[
                dg.AssetCheckResult(
                    check_name="sending_not_paused",
                    passed=not state.paused,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=state.describe(),
                )
            ],
        )

    def switch_job(name: str, pause: bool, description: str) -> Any:
        op = campaign_name(slug, SWITCH_ASSET)  # the op Dagster names after the asset's key
        return dg.define_asset_job(
            campaign_name(slug, name),
            selection=dg.AssetSelection.assets(key),
            config={"ops": {op: {"config": {"pause": pause, "reason": ""}}}},
            description=description,
        )

    jobs = [
        switch_job(
            PAUSE_JOB,
            True,
            f"Pause every send of {campaign.name} (schedule, welcome sensor, deliveries by "
            "hand), including a run under way, until resume_sending. Set `reason` in the "
            "launchpad. Backfills and resend_contact still send. Other campaigns go on.",
        ),
        switch_job(
            RESUME_JOB,
            False,
            f"Resume sending {campaign.name}: the next send run catches up, one email per "
            "person per run.",
        ),
    ]
    return dg.Definitions(assets=[send_switch], jobs=jobs)
