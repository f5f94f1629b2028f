"""Who is in each campaign and what they will get.

Global (one for every campaign, group `sequences`):
- `email_sequences[day]`: that day's signups as contacts and sequences in the store, each
  in the campaign its request names, with that campaign's rules (and a CRITICAL alert per
  new CRITICAL signup, through the alert outbox);
- `booking_state[day]`: that day's Cal.com changes folded into each booking, and each
  touched contact updated, each booking in the campaign it belongs to
  (`services.booking_campaigns`).

Per campaign (`campaign_definitions`):
- `<prefix>/templates`: its email templates, each rendered for each segment's sample
  contact, with the blocking check that every one renders.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.campaign_set import CampaignSet, route, shown_slug, signup_campaign
from xmas_pipeline.core.funnel import steps_reached
from xmas_pipeline.core.optin import Confirmation
from xmas_pipeline.core.ports import BookingUpsertReport
from xmas_pipeline.core.render import TemplateSource
from xmas_pipeline.core.signup import SignupEvent
from xmas_pipeline.core.signups_close import signups_open, split_after_close
from xmas_pipeline.dagster_defs.metadata import (
    email_preview,
    in_group,
    md_table,
    reached_metadata,
    segment_counts,
)
from xmas_pipeline.dagster_defs.names import campaign_key, prefix_of
from xmas_pipeline.dagster_defs.resources import (
    AlertResource,
    EmailSenderResource,
    InboxResource,
    StateStoreResource,
)
from xmas_pipeline.services.booking_campaigns import assign_booking_campaigns
from xmas_pipeline.services.checked_templates import keep_checked
from xmas_pipeline.services.critical_alerts import (
    enqueue_critical_alerts,
    post_critical_alerts,
)
from xmas_pipeline.services.forget import drop_forgotten
from xmas_pipeline.services.inbox_days import read_booking_day, read_signup_day
from xmas_pipeline.services.optin_view import confirmed_signups, held_changes
from xmas_pipeline.services.rendering import check_supervised
from xmas_pipeline.settings import Settings


def render_check(
    sources: Mapping[str, TemplateSource], campaign: Campaign, now: datetime
) -> tuple[list[str], dict[str, dg.MetadataValue]]:
    """Every template for every segment's sample contact, rendered in a watched child
    process (`services.rendering`): problems, and the previews."""
    outcome = check_supervised(sources, campaign, now)
    previews: dict[str, dg.MetadataValue] = {}
    for (base, segment), rendered in outcome.rendered.items():
        if isinstance(rendered, str):
            previews[f"{base} {segment}"] = dg.MetadataValue.md(f"**cannot render**: {rendered}")
            continue
        previews[f"{base} {segment}"] = email_preview(
            rendered.subject, rendered.template, rendered.text
        )
    return outcome.problems, previews


# The `email_sequences` counts that each mean an email to send at once (read back by
# `send_after_signups_sensor`, per campaign under `started_key`).
STARTED_COUNTS = ("new sequences", "confirmed", "confirmation emails owed")
UNAVAILABLE_CHECK = "every_signup_campaign_loaded"


def started_key(slug: str) -> str:
    """The metadata entry: emails a campaign's enrolment made due at once."""
    return f"started {slug}"


def enrol(
    context: dg.AssetExecutionContext,
    camp: Campaign,
    events: list[SignupEvent],
    confirmations: list[Confirmation],
    store: StateStoreResource,
    alerts: AlertResource,
) -> dict[str, Any]:
    """One campaign's share of the day: its signups enrolled with its own rules (close,
    double opt-in, retakes) and its confirmation clicks applied; the metadata."""
    backend = store.prepared(camp)
    # After `signups_close` a new person is not enrolled (no sequence, no email, no
    # alert); their file stays in the inbox. Someone already enrolled retakes as before.
    late = {e.contact_key for e in events if not signups_open(camp, e.received_at)}
    enrolled = backend.load_sequences(camp, late)["contact_key"] if late else []
    events, closed = split_after_close(camp, events, enrolled)
    outbox = store.alert_outbox(camp)
    # Into the alert outbox before the signups are stored, so no crash in between can
    # lose one; one the chat does not take now goes with alert_outbox_sensor. With
    # double opt-in, only a confirmed signup is announced (below): a script posting
    # addresses must not reach the chat.
    critical = (
        enqueue_critical_alerts(events, campaign_name=camp.name, outbox=outbox)
        if alerts.webhook_url and not camp.double_opt_in
        else None
    )
    report = backend.upsert_signups(camp, events)
    confirmed = backend.apply_confirmations(camp, confirmations)
    if alerts.webhook_url and camp.double_opt_in and confirmations:
        # Every confirmed signup of the day, repeats too: the outbox keeps one alert
        # per contact, and a crash after the confirmation was stored loses none.
        keys = {c.contact_key for c in confirmations if c.claim.kind == "signup"}
        running = confirmed_signups(backend.load_sequences(camp, keys), context.partition_key)
        critical = enqueue_critical_alerts(running, campaign_name=camp.name, outbox=outbox)
    alert_meta: dict[str, object] = {}
    if alerts.webhook_url and critical is not None:
        sent = post_critical_alerts(critical, url=alerts.webhook_url, outbox=outbox)
        for key, reason in sent.waiting:
            context.log.warning(f"CRITICAL alert for {key} not delivered yet: {reason}")
        alert_meta = {
            "critical alerts sent": len(sent.sent),
            "critical alerts waiting": len(sent.waiting),
        }
    # The retake rule's held changes (README, "Signing up again"), always shown.
    optin_meta: dict[str, object] = {
        "held profile changes": len(report.held),
        "held changes": md_table(
            held_changes(backend.profile_changes(camp), report.held) if report.held else [],
            ["contact", "changes", "status"],
        ),
    }
    if camp.double_opt_in or confirmations:
        optin_meta.update(
            {
                "awaiting confirmation": len(report.awaiting),
                # Confirmation emails to send at once (a signup's, a held change's).
                "confirmation emails owed": len(report.awaiting) + len(report.asked),
                # Sequences started by a confirmation now: email 1 goes at once.
                "confirmed": len(confirmed.started),
                "changes confirmed": len(confirmed.changed),
                "confirmations repeated": len(confirmed.repeated),
                "confirmations refused": len(confirmed.unknown),
            }
        )
    segments = segment_counts(pd.Series([e.signup.segment.value for e in events]))
    # Campaign-wide: where every sequence stands now (last email sent), per segment.
    everyone = backend.load_sequences(camp)
    reached = steps_reached(everyone, len(camp.steps))
    if camp.double_opt_in:  # campaign-wide: signups whose link was not clicked yet
        waiting = everyone["awaiting_confirmation"] & ~everyone["completed"]
        optin_meta["awaiting confirmation (all)"] = int(waiting.sum())
    # A count only: never addresses in metadata.
    close_meta: dict[str, object] = (
        {"signups after close (campaign closed)": len(closed)}
        if camp.signups_close is not None
        else {}
    )
    context.log.info(
        f"{camp.slug}: {len(report.created)} new sequences, {len(report.updated)} "
        f"refreshed, {len(report.unchanged)} unchanged"
    )
    return {
        "new sequences": len(report.created),
        "refreshed": len(report.updated),
        "unchanged": len(report.unchanged),
        **close_meta,
        **{f"signups {k}": v for k, v in segments.items()},
        **alert_meta,
        **optin_meta,
        "sequences": int(reached["total"].sum()),
        **reached_metadata(reached),
    }


def merge_campaign_metadata(
    per_campaign: Mapping[str, dict[str, Any]], active: list[str], default: str
) -> dict[str, Any]:
    """The campaigns' metadata as one: a number is their sum over every campaign (the
    totals plot as before). Anything else (a table) is shown for the `active` campaigns
    (those with signups or clicks this day, else the default): as it is when there is one,
    under `<slug>: <name>` when there are several."""
    merged: dict[str, Any] = {}
    for metadata in per_campaign.values():
        for name, value in metadata.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                merged[name] = merged.get(name, 0) + value
    shown = active or ([default] if default in per_campaign else list(per_campaign)[:1])
    for slug in shown:
        for name, value in per_campaign[slug].items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                merged[name if len(shown) == 1 else f"{slug}: {name}"] = value
    return merged


def unavailable_check(unavailable: Mapping[str, int]) -> dg.AssetCheckResult:
    """Red while some signup of the day names a campaign that is not loaded."""
    rows = [{"campaign": shown_slug(slug), "files kept": n} for slug, n in unavailable.items()]
    return dg.AssetCheckResult(
        check_name=UNAVAILABLE_CHECK,
        passed=not unavailable,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "campaign unavailable": sum(unavailable.values()),
            "campaigns": md_table(rows, ["campaign", "files kept"]),
        },
        description=None
        if not unavailable
        else (
            "signups for a campaign that is not loaded (unknown, or its folder is broken: "
            "see campaign_folders); their files are kept: once it loads, "
            "campaign_loaded_sensor ingests this day again and takes them"
        ),
    )


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:

    @dg.asset(
        **in_group("sequences"),
        kinds={"python", "sql"},
        partitions_def=partitions,
        deps=["signups"],
        description=(
            "Contacts and their email sequences in the SQL store (Notion's Email Sequence DB "
            "follows through notion_email_sequence), each signup in the campaign its request "
            "names (the default campaign when it names none). A new contact starts the "
            "sequence; a re-delivered signup changes nothing; a newer assessment refreshes "
            "the scores and segment but never restarts the clock, and a new name or business "
            "name is held (README, Signing up again). With double_opt_in, a new sequence "
            "awaits its confirmation link and starts when it is clicked. After the "
            "campaign's signups_close, a new person is not enrolled (counted, file kept). A "
            "signup for a campaign that is not loaded is counted and kept for a later run."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                UNAVAILABLE_CHECK,
                asset="email_sequences",
                description=(
                    "Every signup of the day names a campaign this code location runs (the "
                    "others are kept in the inbox, not ingested)."
                ),
            )
        ],
    )
    def email_sequences(
        context: dg.AssetExecutionContext,
        inbox: InboxResource,
        store: StateStoreResource,
        alerts: AlertResource,
        sender: EmailSenderResource,
    ) -> dg.MaterializeResult:
        # The day's files read again (not a value passed from `signups`): nothing between
        # the two lives on one host's disk, and a re-run of this asset alone works.
        # Confirmation clicks are checked with the keys their links were signed with.
        day = read_signup_day(inbox.get(), context.partition_key, sender.signing_key)
        for item in day.refused:
            context.log.warning(f"confirmation refused {item['file']}: {item['reason']}")
        database = store.database()
        forget = SqlForget(database.url, engine=database.engine)
        events, suppressed = drop_forgotten(inbox.get(), forget, day.events, lambda e: e.source)
        default = campaigns.default_slug
        signups = route(events, lambda e: signup_campaign(e.request, default), campaigns)
        # A click names the campaign its link was signed for.
        clicks = route(day.confirmations, lambda c: c.claim.campaign, campaigns)
        per_campaign = {
            slug: enrol(
                context, camp, signups.by_campaign[slug], clicks.by_campaign[slug], store, alerts
            )
            for slug, camp in campaigns.loaded.items()
        }
        unavailable: dict[str, int] = {}
        for routed in (signups, clicks):
            for slug, items in routed.unavailable.items():
                unavailable[slug] = unavailable.get(slug, 0) + len(items)
        for slug, n in unavailable.items():
            # Kept in the inbox: a run of this day after the campaign loads ingests them.
            context.log.warning(
                f"{n} signup file(s) for campaign {shown_slug(slug)!r}, which is not loaded: "
                "kept, not ingested"
            )
        active = [
            slug
            for slug in campaigns.loaded
            if signups.by_campaign[slug] or clicks.by_campaign[slug]
        ]
        metadata = merge_campaign_metadata(per_campaign, active, default)
        if "confirmations refused" in metadata:
            metadata["confirmations refused"] += len(day.refused)
        return dg.MaterializeResult(
            check_results=[unavailable_check(unavailable)],
            metadata={
                **metadata,
                "suppressed (forgotten)": suppressed,
                "campaign unavailable": sum(unavailable.values()),
                "store": store.backend,
                **{
                    started_key(slug): sum(int(m.get(name, 0)) for name in STARTED_COUNTS)
                    for slug, m in per_campaign.items()
                },
            },
        )

    @dg.asset(
        **in_group("sequences"),
        kinds={"python", "sql"},
        partitions_def=partitions,
        deps=["bookings"],
        description=(
            "Bookings in the state store: each Cal.com change folded into its booking "
            "(a reschedule retires the old booking, a cancellation is final, a re-delivered "
            "webhook changes nothing), and each contact updated: Booking Status = Booked, "
            "Diagnostic Call Date, Christmas Campaign Status = Pre-Call Prep; Not Booked "
            "after a cancellation. A booked contact leaves the nurture sequence."
        ),
    )
    def booking_state(
        context: dg.AssetExecutionContext,
        inbox: InboxResource,
        store: StateStoreResource,
    ) -> dg.MaterializeResult:
        running = campaigns.loaded
        default = campaigns.default_slug if campaigns.default else next(iter(running))
        backend = store.prepared(running[default])
        events = read_booking_day(inbox.get(), context.partition_key).events
        # Each booking belongs to one campaign (`core.booking_campaign`), which alone
        # sends its reminders; its flags reach every campaign (`core.suppression`).
        by_campaign = assign_booking_campaigns(events, backend, running, default)
        parts = {
            slug: backend.upsert_booking_events(running[slug], mine)
            for slug, mine in by_campaign.items()
        }
        report = BookingUpsertReport(
            new_events=sum(p.new_events for p in parts.values()),
            repeats=sum(p.repeats for p in parts.values()),
            bookings=[uid for p in parts.values() for uid in p.bookings],
            updates=[u for p in parts.values() for u in p.updates],
        )
        owners = {slug: len(mine) for slug, mine in by_campaign.items()}
        context.log.info(
            f"{report.new_events} new booking changes, {report.repeats} repeats, "
            f"{len(report.updates)} contacts updated; by campaign: {owners}"
        )
        rows = [
            {
                "contact": u.contact_key,
                "status": u.booking_status,
                "call (UTC)": u.call_date.strftime("%Y-%m-%d %H:%M") if u.call_date else "",
                "booking": u.booking_uid,
            }
            for u in report.updates
        ]
        return dg.MaterializeResult(
            metadata={
                "new changes": report.new_events,
                "repeats": report.repeats,
                "bookings changed": len(report.bookings),
                "contacts booked": sum(u.booked for u in report.updates),
                "contacts not booked": sum(not u.booked for u in report.updates),
                "store": store.backend,
                "contacts updated": md_table(rows, ["contact", "status", "call (UTC)", "booking"]),
                "changes by campaign": dg.MetadataValue.json(owners),
            }
        )

    return dg.Definitions(assets=[email_sequences, booking_state])


def campaign_definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    key = campaign_key(campaign.slug, "templates")

    @dg.asset(
        key=key,
        **in_group(prefix_of(campaign.slug)),
        kinds={"python"},
        description=(
            "The email templates (shipped files, overridden by the Notion templates DB when "
            "configured), each rendered for each segment with a sample contact so a change "
            "is reviewed here before it is sent."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "every_template_renders",
                asset=key,
                blocking=True,
                description=(
                    "Every template renders for every segment with no unknown variable, within "
                    "the rendering limits (time, output, loops, sizes), carries what every bulk "
                    "email must, and links or loads only from allowed hosts; a failure stops "
                    "the send run before anything is sent. The run sends exactly the templates "
                    "checked here."
                ),
            )
        ],
    )
    def templates(
        context: dg.AssetExecutionContext, store: StateStoreResource
    ) -> dg.MaterializeResult:
        camp = campaign
        sources = store.templates(camp)
        problems, previews = render_check(sources, camp, datetime.now(UTC))
        # What this run's `deliveries` sends with: exactly what was checked here, even if
        # someone edits a template in Notion meanwhile.
        keep_checked(store.template_snapshots(), camp, context.run_id, sources, problems)
        check = dg.AssetCheckResult(
            check_name="every_template_renders",
            passed=not problems,
            metadata={
                "problems": len(problems),
                "details": md_table([{"problem": p} for p in problems], ["problem"]),
            },
        )
        return dg.MaterializeResult(
            check_results=[check],
            metadata={
                "templates": len(sources),
                "sources": md_table(
                    [{"name": s.name, "origin": s.origin} for s in sources.values()],
                    ["name", "origin"],
                ),
                **previews,
            },
        )

    return dg.Definitions(assets=[templates])
