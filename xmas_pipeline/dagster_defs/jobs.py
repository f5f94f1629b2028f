"""The jobs the UI offers, and the one op that is not an asset: the one-off re-send.

Global: `ingest_signups`, `ingest_bookings`, `ingest_email_events`: one inbox day each
(the sensors start them). Per campaign (named `<prefix>__<name>`, `dagster_defs.names`):
- `send_due_emails`: check the templates, compute what is due, send it (its schedule
  starts it; a backfill over its days re-sends);
- `refresh_funnel`: recount its funnel (sends nothing);
- `resend_contact`: chosen steps to one person now.

Beside the ingestion jobs, `campaign_loaded_sensor`, which starts them again for the inbox
days a newly loaded campaign has waiting.

Send runs carry the `xmas/send` tag: the schedule never starts one while another is in
flight, and the instance config limits the tag to one run at a time.
"""

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.core.forced_sends import SendRefused
from xmas_pipeline.dagster_defs.executor import request_id, run_is_live
from xmas_pipeline.dagster_defs.metadata import md_table
from xmas_pipeline.dagster_defs.names import campaign_key, campaign_name
from xmas_pipeline.dagster_defs.resources import (
    EmailSenderResource,
    InboxResource,
    StateStoreResource,
)
from xmas_pipeline.services.checked_templates import TemplatesRefused, templates_to_send
from xmas_pipeline.services.forced_sends import plan_contact_send
from xmas_pipeline.services.held_days import EMAIL_EVENTS, SIGNUPS, days_holding
from xmas_pipeline.services.planning import send_gate
from xmas_pipeline.services.sending import DeliveryReport
from xmas_pipeline.settings import Settings

SEND_TAG = "xmas/send"
# The concurrency pool every op that sends holds (deliveries in any run, the one-off
# re-send); every instance config the project ships or writes limits it to 1.
SEND_POOL = "xmas/send"
INGEST_SIGNUPS_JOB = "ingest_signups"
INGEST_BOOKINGS_JOB = "ingest_bookings"
INGEST_EMAIL_EVENTS_JOB = "ingest_email_events"
SEND_JOB = "send_due_emails"
FUNNEL_JOB = "refresh_funnel"
RESEND_CONTACT_JOB = "resend_contact"
RESEND_OP = "resend_to_contact"
INGEST_JOBS = (INGEST_SIGNUPS_JOB, INGEST_BOOKINGS_JOB, INGEST_EMAIL_EVENTS_JOB)
# An ingestion run that dies or fails is run again by the daemon (run retries on in every
# instance config the project ships or writes); ingestion is idempotent, so that is safe.
INGEST_RETRY_TAGS = {"dagster/max_retries": "3", "dagster/retry_strategy": "ALL_STEPS"}


class ResendContactConfig(dg.Config):
    """What the launchpad asks for."""

    email: str = Field(description="The contact's email address, as they signed up.")
    steps: list[str] = Field(
        description='Steps to send again, e.g. ["email-3"] or ["email-1", "reminder-2"].'
    )


def contact_send_metadata(report: DeliveryReport, email: str, steps: list[str]) -> dict[str, Any]:
    problems = report.problems()
    return {
        "contact": email,
        "steps": ", ".join(steps),
        "sent": len(report.sent),
        "failed": len(report.failed),
        "retry next run": len(report.retry),
        "sent messages": md_table(report.sent, ["message_id", "step_id", "provider_id"]),
        "problems": md_table(problems.to_dict("records"), list(problems.columns)),
    }


def resend_contact_job(campaign: Campaign) -> dg.JobDefinition:
    """The campaign's `<prefix>__resend_contact` job, its op `<prefix>__resend_to_contact`."""
    camp = campaign

    @dg.op(
        name=campaign_name(campaign.slug, RESEND_OP),
        pool=SEND_POOL,
        description=(
            "Send the chosen steps to one contact now, under keys derived from this launch "
            "(re-executing it sends nothing twice). Sends even while sending is paused."
        ),
    )
    def resend_to_contact(
        context: dg.OpExecutionContext,
        config: ResendContactConfig,
        store: StateStoreResource,
        sender: EmailSenderResource,
    ) -> dg.Output[int]:
        backend = store.prepared(camp)
        now = datetime.now(UTC)
        try:
            asked = plan_contact_send(backend, camp, config.email, config.steps, now)
            templates = templates_to_send(
                store.template_snapshots(), lambda: store.templates(camp), camp, context.run_id, now
            )
        except (SendRefused, TemplatesRefused) as exc:
            raise dg.Failure(description=f"Not sent: {exc}") from None
        report = sender.deliver(
            backend,
            camp,
            templates,
            asked.plan,
            now=now,
            # The same key for every attempt at this launch: re-executing a failed run sends
            # only what the first attempt did not.
            idempotency_suffix=f"/resend-{request_id(context.instance, context.run)}",
            # An explicit request: it goes while sending is paused, and only what stops the
            # person for good (unsubscribed, bounced, complained) refuses it, at the last
            # moment.
            gate=send_gate(backend, camp, None, one_off=True),
            journal=store.journal(context.run_id),
            holder_alive=lambda run_id: run_is_live(context.instance, run_id),
        )
        metadata = contact_send_metadata(report, asked.contact_key, asked.steps)
        if report.failed or report.retry or report.stopped:
            reasons = "; ".join(f"{p['step_id']}: {p['reason']}" for p in report.failed)
            reasons = reasons or "; ".join(f"{p['step_id']}: {p['reason']}" for p in report.retry)
            raise dg.Failure(
                description=f"Not everything was sent: {report.stopped or reasons}",
                metadata=metadata,
            )
        context.log.info(f"re-sent {', '.join(asked.steps)} to {asked.contact_key}")
        return dg.Output(len(report.sent), metadata=metadata)

    @dg.job(
        name=campaign_name(campaign.slug, RESEND_CONTACT_JOB),
        # It sends: never alongside a send run.
        tags={SEND_TAG: "1"},
        description=(
            f"Re-send chosen emails of {campaign.name} to one person now. In the launchpad "
            "set `email` and `steps` (e.g. [email-3]). Refused for an unknown contact or "
            "step, and for anyone unsubscribed or whose address bounced. An explicit "
            "request: it sends even while sending is paused."
        ),
    )
    def resend_contact() -> None:
        resend_to_contact()

    return resend_contact


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    def ingest(name: str, assets: list[str], description: str) -> Any:
        return dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*assets),
            partitions_def=partitions,
            tags=INGEST_RETRY_TAGS,
            description=description,
        )

    jobs = [
        ingest(
            INGEST_SIGNUPS_JOB,
            ["signups", "email_sequences"],
            "Validate one day of signup files and start their sequences, each in its campaign.",
        ),
        ingest(
            INGEST_BOOKINGS_JOB,
            ["bookings", "booking_state"],
            "Validate one day of Cal.com booking files and update bookings and contacts.",
        ),
        ingest(
            INGEST_EMAIL_EVENTS_JOB,
            ["email_events"],
            "Apply one day of email events: delivery status and exit flags.",
        ),
    ]
    return dg.Definitions(
        jobs=jobs, sensors=[campaign_loaded_sensor(settings, campaigns, jobs, partitions)]
    )


def campaign_loaded_sensor(
    settings: Settings,
    campaigns: CampaignSet,
    jobs: list[Any],
    partitions: dg.PartitionsDefinition,
) -> dg.SensorDefinition:
    """Ingests again the inbox days that hold files for a campaign this code location
    loads and the one before did not (its folder fixed, or added): ingestion kept those
    signups and email events waiting, and is idempotent, so a day run again takes them."""
    loaded = sorted(campaigns.loaded)
    by_kind = {SIGNUPS: INGEST_SIGNUPS_JOB, EMAIL_EVENTS: INGEST_EMAIL_EVENTS_JOB}
    targets = [job for job in jobs if job.name in by_kind.values()]

    @dg.sensor(
        name="campaign_loaded_sensor",
        jobs=targets,
        minimum_interval_seconds=max(1, min(settings.sensor_interval_seconds, 60)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "After a code location load that runs a campaign the one before did not (a "
            "folder fixed or added), ingests again every inbox day holding a signup or an "
            "email event kept waiting for it (ingestion never drops one)."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, inbox: InboxResource):  # type: ignore[no-untyped-def]
        before = json.loads(context.cursor) if context.cursor else None
        context.update_cursor(json.dumps(loaded))
        if before is None:
            return dg.SkipReason(f"{len(loaded)} campaign(s) running; nothing was waiting")
        new = sorted(set(loaded) - set(before))
        if not new:
            return dg.SkipReason("no campaign loaded that was not running before")
        days = days_holding(inbox.get(), new, campaigns.default_slug)
        valid = set(partitions.get_partition_keys())
        requests = [
            dg.RunRequest(
                job_name=by_kind[kind],
                partition_key=day,
                run_key=f"campaign-loaded:{','.join(new)}:{kind}:{day}",
                tags={"xmas/campaign-loaded": ",".join(new)},
            )
            for kind, kind_days in days.items()
            for day in kind_days
            if day in valid
        ]
        if not requests:
            return dg.SkipReason(f"{', '.join(new)} loaded; no inbox day holds a file for it")
        context.log.info(f"{', '.join(new)} loaded: {len(requests)} inbox day(s) to ingest again")
        return requests

    return _sensor


def send_job(campaign: Campaign, partitions: dg.PartitionsDefinition) -> Any:
    """The campaign's `<prefix>__send_due_emails` job (its schedule and the welcome sensor
    start it; a backfill over its days re-sends)."""
    slug = campaign.slug
    return dg.define_asset_job(
        campaign_name(slug, SEND_JOB),
        selection=dg.AssetSelection.assets(
            *(campaign_key(slug, name) for name in ("templates", "due_emails", "deliveries"))
        ),
        partitions_def=partitions,
        tags={SEND_TAG: "1"},
        description=(
            f"Check {campaign.name}'s templates, compute what is due, send it. Backfill a range "
            "of days to re-send; set `force: true` under its `deliveries` to re-send the "
            "nurture emails already sent. A backfill sends even while sending is paused."
        ),
    )


def deliveries_config(slug: str, **config: Any) -> dict[str, Any]:
    """Run config setting `config` on a campaign's `deliveries` (its op's name)."""
    return {"ops": {campaign_name(slug, "deliveries"): {"config": config}}}


def campaign_definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    # Its send job is made once by the caller (`build`), which also hands it to the
    # welcome sensor: one definition, two users.
    jobs = [
        dg.define_asset_job(
            campaign_name(campaign.slug, FUNNEL_JOB),
            selection=dg.AssetSelection.assets(campaign_key(campaign.slug, "funnel")),
            description=f"Recount {campaign.name}'s funnel (sends nothing).",
        ),
        resend_contact_job(campaign),
    ]
    return dg.Definitions(jobs=jobs)
