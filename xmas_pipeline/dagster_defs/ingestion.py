"""The ingestion group: what came in, one partition per day received.

- `signups[day]`: the assessment results in `inbox/signups/<day>/`, validated;
- `bookings[day]`: the Cal.com changes in `inbox/bookings/<day>/` (webhook bodies, and the
  API items the Cal.com poller drops there), validated;
- `email_events[day]`: Resend events and unsubscribes in `inbox/email-events/<day>/`,
  applied: each message's delivery status, and the exit flags they set.

Bad files are reported with their reason (and a red `no_rejected_files` check) and kept
where they are.
"""

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.core.campaign_set import CampaignSet, route, shown_slug
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.dagster_defs.metadata import (
    counts,
    in_group,
    md_table,
    rejected_files_check,
    segment_counts,
)
from xmas_pipeline.dagster_defs.reputation import evaluate_reputation, reputation_check_spec
from xmas_pipeline.dagster_defs.resources import (
    AlertResource,
    InboxResource,
    StateStoreResource,
)
from xmas_pipeline.services.email_events import (
    AppliedEvents,
    apply_email_events,
    apply_suppressions,
)
from xmas_pipeline.services.forget import drop_forgotten
from xmas_pipeline.services.inbox_days import (
    read_booking_day,
    read_email_event_day,
    read_signup_day,
    repeats,
)
from xmas_pipeline.settings import Settings

EVENTS_UNAVAILABLE_CHECK = "every_event_campaign_loaded"


def events_unavailable_check(unavailable: Mapping[str, list[DeliveryEvent]]) -> dg.AssetCheckResult:
    """Red while some email event of the day names a campaign that is not loaded."""
    rows = [
        {"campaign": shown_slug(slug), "events kept": len(items)}
        for slug, items in unavailable.items()
    ]
    return dg.AssetCheckResult(
        check_name=EVENTS_UNAVAILABLE_CHECK,
        passed=not unavailable,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "campaign unavailable": sum(len(items) for items in unavailable.values()),
            "campaigns": md_table(rows, ["campaign", "events kept"]),
        },
        description=None
        if not unavailable
        else (
            "email events for a campaign that is not loaded (unknown, or its folder is "
            "broken: see campaign_folders): their unsubscribes, hard bounces and complaints "
            "already stop every campaign's emails; the events are kept: once the campaign "
            "loads, campaign_loaded_sensor ingests this day again and records them"
        ),
    )


def _no_rejected_files(asset: str, what: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("no_rejected_files", asset=asset, description=what)


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:

    @dg.asset(
        **in_group("ingestion"),
        kinds={"python", "pandas"},
        partitions_def=partitions,
        description=(
            "Assessment signups received on this day: every JSON file in "
            "`inbox/signups/<day>/`, validated. Bad files are reported with their reason "
            "and kept where they are."
        ),
        check_specs=[
            _no_rejected_files(
                "signups", "Every signup file of the day is valid JSON with valid fields."
            )
        ],
    )
    def signups(context: dg.AssetExecutionContext, inbox: InboxResource) -> dg.MaterializeResult:
        day = context.partition_key
        batch = read_signup_day(inbox.get(), day)
        for item in batch.rejected:
            context.log.warning(f"rejected {item['file']}: {item['reason']}")
        by_segment = segment_counts(pd.Series([e.signup.segment.value for e in batch.events]))
        return dg.MaterializeResult(
            check_results=[rejected_files_check(day, batch.rejected)],
            metadata={
                "day": day,
                "accepted": len(batch.events),
                "rejected": len(batch.rejected),
                "repeats": repeats(batch.events),
                # Double opt-in's clicks, checked and applied by email_sequences.
                "confirmation clicks": batch.ignored,
                **{f"segment {k}": v for k, v in by_segment.items()},
                "rejected files": md_table(batch.rejected, ["file", "reason"]),
            },
        )

    @dg.asset(
        **in_group("ingestion"),
        kinds={"calcom", "python"},
        partitions_def=partitions,
        description=(
            "Cal.com booking changes received on this day: every file in "
            "`inbox/bookings/<day>/` (a webhook's BOOKING_CREATED / RESCHEDULED / CANCELLED "
            "body, or a booking the Cal.com poller fetched), validated. Bad files are "
            "reported with their reason and kept where they are."
        ),
        check_specs=[
            _no_rejected_files(
                "bookings", "Every booking file of the day is valid, with what a reminder needs."
            )
        ],
    )
    def bookings(context: dg.AssetExecutionContext, inbox: InboxResource) -> dg.MaterializeResult:
        day = context.partition_key
        batch = read_booking_day(inbox.get(), day)
        for item in batch.rejected:
            context.log.warning(f"rejected {item['file']}: {item['reason']}")
        kinds = counts(pd.Series([e.kind for e in batch.events], dtype=object))
        sources = counts(pd.Series([e.source for e in batch.events], dtype=object))
        return dg.MaterializeResult(
            check_results=[rejected_files_check(day, batch.rejected)],
            metadata={
                "day": day,
                "accepted": len(batch.events),
                "rejected": len(batch.rejected),
                "ignored (other triggers)": batch.ignored,
                **{f"{kind}": n for kind, n in kinds.items()},
                **{f"from {source}": n for source, n in sources.items()},
                "rejected files": md_table(batch.rejected, ["file", "reason"]),
            },
        )

    @dg.asset(
        **in_group("ingestion"),
        kinds={"resend", "python"},
        partitions_def=partitions,
        description=(
            "Email events received on this day (`inbox/email-events/<day>/`): Resend's "
            "delivered, opened, clicked, bounced and complained events update each "
            "message's delivery status; a hard bounce, a complaint or an unsubscribe stops "
            "every later email to that contact. Bad files are reported and kept. Then the "
            "reputation guard judges each campaign's bounce and complaint rates "
            "(sender_reputation)."
        ),
        check_specs=[
            _no_rejected_files(
                "email_events", "Every email-event file of the day is a valid event."
            ),
            reputation_check_spec("email_events"),
            dg.AssetCheckSpec(
                EVENTS_UNAVAILABLE_CHECK,
                asset="email_events",
                description=(
                    "Every email event of the day is for a campaign this code location runs "
                    "(the others' stop flags are applied; the events are kept in the inbox "
                    "and recorded by a run of the day once their campaign loads)."
                ),
            ),
        ],
    )
    def email_events(
        context: dg.AssetExecutionContext,
        inbox: InboxResource,
        store: StateStoreResource,
        alerts: AlertResource,
    ) -> dg.MaterializeResult:
        day = context.partition_key
        # Where a held event's stop flag is kept meanwhile: the default campaign, else the
        # first that loads. Prepared first: the reputation guard reads the store after.
        home = campaigns.default or next(iter(campaigns.loaded.values()), None)
        if home is not None:
            store.prepared(home)
        batch = read_email_event_day(inbox.get(), day)
        for item in batch.rejected:
            context.log.warning(f"rejected {item['file']}: {item['reason']}")
        database = store.database()
        forget = SqlForget(database.url, engine=database.engine)
        events, suppressed = drop_forgotten(inbox.get(), forget, batch.events, lambda e: e.ref)
        # Each event in the campaign its email was sent for (the `campaign` tag every
        # email carries; none: the default campaign); the flags it sets reach every
        # campaign. One naming a campaign that is not loaded is held, never dropped.
        routed = route(
            events, lambda e: e.tags.get("campaign") or campaigns.default_slug, campaigns
        )
        running = campaigns.loaded
        applied = AppliedEvents()
        for slug, mine in routed.by_campaign.items():
            if not mine:
                continue
            part = apply_email_events(store.prepared(running[slug]), running[slug], mine)
            applied.new += part.new
            applied.repeats += part.repeats
            applied.flagged.extend(part.flagged)
        held = [event for items in routed.unavailable.values() for event in items]
        if held and home is not None:
            applied.flagged.extend(apply_suppressions(store.prepared(home), home, held))
        for slug, items in routed.unavailable.items():
            context.log.warning(
                f"{len(items)} email event(s) for campaign {shown_slug(slug)!r}, which is not "
                "loaded: their stop flags are applied, the events kept for a later run"
            )
        # The reputation guard judges every running campaign on its own mail.
        reputation = evaluate_reputation(
            context,
            store,
            alerts,
            running,
            campaigns.default_slug,
            settings.reputation_limits,
            "email_events",
        )
        return dg.MaterializeResult(
            check_results=[
                rejected_files_check(day, batch.rejected),
                reputation,
                events_unavailable_check(routed.unavailable),
            ],
            metadata={
                "day": day,
                "events": len(batch.events),
                "campaign unavailable": routed.unavailable_count,
                "new": applied.new,
                "repeats": applied.repeats,
                "rejected": len(batch.rejected),
                "ignored (other types)": batch.ignored,
                "suppressed (forgotten)": suppressed,
                "by type": dg.MetadataValue.json(
                    counts(pd.Series([e.kind for e in batch.events], dtype=object))
                ),
                "contacts stopped": md_table(applied.flagged, ["contact", "flag"]),
                "rejected files": md_table(batch.rejected, ["file", "reason"]),
            },
        )

    return dg.Definitions(assets=[signups, bookings, email_events])
