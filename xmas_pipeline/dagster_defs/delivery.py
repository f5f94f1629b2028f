"""A campaign's sending half: what is due now (`<prefix>/due_emails`), and sending it
(`<prefix>/deliveries`, one partition per day the messages fell due, from the campaign's
start date). Each asset closes over its campaign (`dagster_defs.names` for the names)."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import due_in_range, stuck_after
from xmas_pipeline.core.exit_rules import SEND
from xmas_pipeline.core.segments import ALL_SEGMENTS
from xmas_pipeline.core.send_plan import plan_due
from xmas_pipeline.core.upcoming import upcoming_from_state
from xmas_pipeline.dagster_defs.executor import is_backfill, request_id, run_is_live
from xmas_pipeline.dagster_defs.jobs import SEND_POOL
from xmas_pipeline.dagster_defs.metadata import (
    counts,
    frame_table,
    in_group,
    md_table,
    reasons_table,
)
from xmas_pipeline.dagster_defs.names import campaign_key, prefix_of
from xmas_pipeline.dagster_defs.resources import EmailSenderResource, StateStoreResource
from xmas_pipeline.services.checked_templates import TemplatesRefused, templates_to_send
from xmas_pipeline.services.forced_sends import forced_backfill_plan
from xmas_pipeline.services.planning import due_plan, send_gate
from xmas_pipeline.services.sending import DeliveryReport
from xmas_pipeline.settings import Settings

# How far ahead `due_emails` shows what falls due.
FORECAST = timedelta(days=7)


class DeliveriesConfig(dg.Config):
    """Launchpad / backfill options for a campaign's `deliveries`. A backfill is an
    explicit request: it sends even while sending is paused; any other run does not."""

    force: bool = False
    """Re-send the nurture emails already sent in the selected days, under keys derived
    from this backfill (re-executing it sends nothing twice). Reminders are not re-sent
    (use resend_contact)."""
    catch_up: bool = False
    """Also send anything due before the selected days (the schedule sets this)."""


def campaign_definitions(
    settings: Settings,
    campaign: Campaign,
    partitions: dg.PartitionsDefinition,
    running: Mapping[str, Campaign],
) -> dg.Definitions:
    """`running`: every campaign of the code location, by slug: the gap between nurture
    emails holds across them (`core.due`)."""
    slug = campaign.slug
    camp = campaign

    @dg.asset(
        key_prefix=[prefix_of(slug)],
        **in_group(prefix_of(slug)),
        kinds={"python", "pandas"},
        deps=["email_sequences", "booking_state", "email_events"],
        description=(
            "Every message due now and not yet sent: for each contact, the earliest unsent "
            "step whose time has come (at most one nurture email per person per run), with "
            "the exit rules applied (booked, unsubscribed, bounced, paused); and what falls "
            "due in the next 7 days, per day and step."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "nothing_stuck_unsent",
                asset=campaign_key(slug, "due_emails"),
                description="No message is still unsent well past its due time.",
            )
        ],
    )
    def due_emails(
        context: dg.AssetExecutionContext, store: StateStoreResource
    ) -> dg.MaterializeResult:
        backend = store.prepared(camp)
        now = datetime.now(UTC)
        # Read once: the plan and the 7-day forecast come from the same state, which holds
        # only the sequences with something due within the week (`sequences.next_due_at`).
        state = backend.load_due_states([camp], now, FORECAST, running)[slug]
        plan, _ = plan_due(state, camp, now)
        active, completed = backend.sequence_counts(camp)
        to_send = plan[plan["action"] == SEND]
        limit = stuck_after(camp)
        stuck = to_send[to_send["due_at"] < pd.Timestamp(now - limit)]
        context.log.info(f"{len(to_send)} to send, {len(plan) - len(to_send)} skipped or exiting")
        check = dg.AssetCheckResult(
            check_name="nothing_stuck_unsent",
            passed=stuck.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "stuck": len(stuck),
                "threshold minutes": limit.total_seconds() / 60,
                "messages": md_table(
                    stuck.assign(due_at=stuck["due_at"].astype(str)).to_dict("records"),
                    ["message_id", "step_id", "due_at"],
                ),
            },
        )
        return dg.MaterializeResult(
            check_results=[check],
            metadata={
                "due": len(to_send),
                "skipped or exiting": len(plan) - len(to_send),
                "active sequences": active,
                "completed sequences": completed,
                "due by step": dg.MetadataValue.json(counts(to_send["step_id"])),
                "due by segment": dg.MetadataValue.json(counts(to_send["segment"])),
                "next 7 days": frame_table(upcoming_from_state(state, camp, now)),
                "evaluated at": now.isoformat(timespec="seconds"),
                "sending": store.send_switch().state(camp).describe(),
            },
        )

    @dg.asset(
        key_prefix=[prefix_of(slug)],
        **in_group(prefix_of(slug)),
        kinds={"python", "resend"},
        partitions_def=partitions,
        deps=[campaign_key(slug, "due_emails"), campaign_key(slug, "templates")],
        pool=SEND_POOL,
        description=(
            "Emails sent, per day they fell due: render, send (Resend or the outbox), then "
            "write sent-status back. The schedule's run for today also catches up anything "
            "overdue. A backfill over past days sends what is missing there; with "
            "`force: true` in its run config it re-sends those days' nurture emails. While "
            "sending is paused only a backfill sends."
        ),
    )
    def deliveries(
        context: dg.AssetExecutionContext,
        config: DeliveriesConfig,
        store: StateStoreResource,
        sender: EmailSenderResource,
    ) -> dg.MaterializeResult:
        window = context.partition_key_range
        start_day = camp.start_date if config.catch_up else window.start
        backend = store.prepared(camp)
        # A backfill is a person's explicit request: it goes while sending is paused.
        switch = None if is_backfill(context.run) else store.send_switch()
        state = switch.state(camp) if switch is not None else None
        if state is not None and state.paused:
            context.log.info(f"nothing sent: sending is {state.describe()}")
            return dg.MaterializeResult(metadata={"sent": 0, "sending": state.describe()})
        try:
            templates = templates_to_send(
                store.template_snapshots(), lambda: store.templates(camp), camp, context.run_id
            )
        except TemplatesRefused as exc:
            raise dg.Failure(description=f"Nothing sent: {exc}") from None
        # The plan is made here, once this op holds the send pool, from the store as it is
        # now: never a list computed earlier, nor one left on some host's disk.
        due, _ = due_plan(backend, camp, datetime.now(UTC), running)
        plan = due_in_range(due, start_day, window.end)
        suffix = ""
        if config.force:
            forced = forced_backfill_plan(backend, camp, window.start, window.end)
            plan = pd.concat([plan, forced]).drop_duplicates("message_id", keep="last")
            plan = plan.reset_index(drop=True)
            # The same key for every attempt at this request: a re-execution sends only
            # what the first attempt did not.
            suffix = f"/resend-{request_id(context.instance, context.run)}"
        report = sender.deliver(
            backend,
            camp,
            templates,
            plan,
            idempotency_suffix=suffix,
            # Just before each batch: the pause, the person's flags, each reminder's booking.
            gate=send_gate(backend, camp, switch, campaigns=running),
            journal=store.journal(context.run_id),
            # An open batch of a run still going is that run's; one of a run that ended
            # (marked failed by the watchdog if it died) is replayed here.
            holder_alive=lambda run_id: run_is_live(context.instance, run_id),
        )
        metadata = delivery_metadata(report, sender.backend, config.force)
        if report.stopped:
            raise dg.Failure(description=f"Sending stopped: {report.stopped}", metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return dg.Definitions(assets=[due_emails, deliveries])


def delivery_metadata(report: DeliveryReport, backend: str, forced: bool) -> dict[str, Any]:
    problems = report.problems()
    return {
        "due": report.due,
        "sent": len(report.sent),
        "failed": len(report.failed),
        "retry next run": len(report.retry),
        "skipped": len(report.skipped),
        "in another run's hands": len(report.elsewhere),
        "replayed as they were": report.replayed,
        "sending": report.paused or "on",
        "sent by step": dg.MetadataValue.json(report.counts_by_step()),
        "sender": backend,
        "forced": forced,
        **{f"sent {segment}": n for segment, n in sent_by_segment(report).items()},
        "reasons": reasons_table(problems),
        "problems": md_table(problems.to_dict("records"), list(problems.columns)),
    }


def sent_by_segment(report: DeliveryReport) -> dict[str, int]:
    sent = {segment.value: 0 for segment in ALL_SEGMENTS}
    for item in report.sent:
        sent[item["segment"]] = sent.get(item["segment"], 0) + 1
    return sent
