"""Bookings and email events, and the reminders' part of the send path.

- `bookings[day]`: the Cal.com changes in `inbox/bookings/<day>/` (webhook bodies, and the
  API items the Cal.com poller drops there), validated; bad files reported and kept.
- `booking_state[day]`: those changes folded into each booking in the store, and each
  touched contact updated (Booked + call date + Pre-Call Prep, or Not Booked).
- `email_events[day]`: Resend events and unsubscribes in `inbox/email-events/<day>/`:
  each message's delivery status, and the exit flags (unsubscribed, bounced, complained).
- `calcom_poll_sensor` (only with `CALCOM_API_KEY`): polls `GET /v2/bookings` and writes
  each new booking version to `inbox/bookings/<today>/`, where `bookings_sensor` finds it.

`reminder_plan`, `add_reminders`, `message_context` and `booking_hold` are what the
delivery assets call for reminders.
"""

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.adapters.calcom import (
    DEFAULT_API_URL,
    CalcomClient,
    PollCursor,
    poll_bookings,
)
from xmas_pipeline.adapters.inbox import Inbox, InboxFile
from xmas_pipeline.adapters.store import StateStore
from xmas_pipeline.core.bookings import BookingEvent, parse_api_booking, parse_webhook
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import nurture_context, reminder_context
from xmas_pipeline.core.email_events import DeliveryEvent, contact_flags, parse_email_event
from xmas_pipeline.core.reminders import (
    REMINDER_EXTRA_COLUMNS,
    bookings_from_frame,
    compute_due_reminders,
    empty_reminders,
    reminder_contact_fields,
    settled_reminders,
    stale_reason,
)
from xmas_pipeline.core.state import SIGNUP_FIELDS
from xmas_pipeline.dagster_defs.ingestion import OWNERS, inbox_sensor
from xmas_pipeline.dagster_defs.metadata import counts, md_table, rejected_files_check
from xmas_pipeline.dagster_defs.partitions import daily_partitions
from xmas_pipeline.dagster_defs.resources import (
    CampaignResource,
    InboxResource,
    StateStoreResource,
)
from xmas_pipeline.settings import Settings

# The poller's inbox files: {"source": API_SOURCE, "booking": <a GET /v2/bookings item>}.
API_SOURCE = "calcom-api-v2"
INGEST_BOOKINGS_JOB = "ingest_bookings"
INGEST_EMAIL_EVENTS_JOB = "ingest_email_events"


class CalcomResource(dg.ConfigurableResource):
    """Cal.com API v2, for the polling sensor (`CALCOM_API_KEY`, `CALCOM_API_URL`)."""

    api_key: str
    api_url: str = DEFAULT_API_URL

    def client(self) -> CalcomClient:
        return CalcomClient(self.api_key, self.api_url)


# -- reading the inbox ------------------------------------------------------------------------


@dataclass
class DayBatch:
    events: list[Any] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0  # valid files of kinds the campaign does not act on (PING, opened...)


def parse_booking_file(raw: bytes, ref: str, received_at: datetime) -> BookingEvent | None:
    """A webhook body, or an API item in the poller's envelope."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("source") == API_SOURCE:
        item = data.get("booking")
        if not isinstance(item, dict):
            raise ValueError("booking: missing or not an object")
        return parse_api_booking(item, ref=ref)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return parse_webhook(data, received_at=received_at, ref=ref)


def _read_day(inbox: Inbox, kind: str, day: str, parse: Callable[[InboxFile], Any]) -> DayBatch:
    """Every file of one inbox day: parsed events, ignored ones (None), rejected with why."""
    batch = DayBatch()
    for item in inbox.files(kind, day):
        try:
            event = parse(item)
        except (ValueError, OSError) as exc:
            batch.rejected.append({"file": item.ref, "reason": str(exc).splitlines()[0][:300]})
            continue
        if event is None:
            batch.ignored += 1
        else:
            batch.events.append(event)
    return batch


def read_booking_day(inbox: Inbox, day: str) -> DayBatch:
    return _read_day(
        inbox,
        "bookings",
        day,
        lambda item: parse_booking_file(inbox.read(item), item.ref, item.received_at),
    )


def read_email_event_day(inbox: Inbox, day: str) -> DayBatch:
    return _read_day(
        inbox,
        "email-events",
        day,
        lambda item: parse_email_event(
            inbox.read(item), received_at=item.received_at, ref=item.ref
        ),
    )


def booking_events_frame(events: list[BookingEvent]) -> pd.DataFrame:
    return pd.DataFrame([event.model_dump(mode="json") for event in events])


def booking_events_from_frame(frame: pd.DataFrame) -> list[BookingEvent]:
    if frame.empty:
        return []
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [BookingEvent.model_validate(record) for record in records]


# -- assets, jobs, sensors --------------------------------------------------------------------


def build_bookings(campaign: Campaign, settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(campaign)

    @dg.asset(
        group_name="ingestion",
        kinds={"calcom", "python"},
        owners=OWNERS,
        partitions_def=partitions,
        description=(
            "Cal.com booking changes received on this day: every file in "
            "`inbox/bookings/<day>/` (a webhook's BOOKING_CREATED / RESCHEDULED / CANCELLED "
            "body, or a booking the Cal.com poller fetched), validated. Bad files are "
            "reported with their reason and kept where they are."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "no_rejected_files",
                asset="bookings",
                description="Every booking file of the day is valid, with what a reminder needs.",
            )
        ],
    )
    def bookings(context: dg.AssetExecutionContext, inbox: InboxResource):  # type: ignore[no-untyped-def]
        day = context.partition_key
        batch = read_booking_day(inbox.get(), day)
        for item in batch.rejected:
            context.log.warning(f"rejected {item['file']}: {item['reason']}")
        frame = booking_events_frame(batch.events)
        kinds = counts(frame["kind"]) if not frame.empty else {}
        sources = counts(frame["source"]) if not frame.empty else {}
        yield dg.Output(
            frame,
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
        yield rejected_files_check(day, batch.rejected)

    @dg.asset(
        group_name="sequences",
        kinds={"python", "sql"},
        owners=OWNERS,
        partitions_def=partitions,
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
        bookings: pd.DataFrame,
        store: StateStoreResource,
        campaign_config: CampaignResource,
    ) -> dg.MaterializeResult:
        camp = campaign_config.campaign
        backend = store.get()
        require_bookings(backend)
        backend.prepare(camp)
        report = backend.upsert_booking_events(camp, booking_events_from_frame(bookings))
        context.log.info(
            f"{report.new_events} new booking changes, {report.repeats} repeats, "
            f"{len(report.updates)} contacts updated"
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
                "no CRM contact": len(report.contact_missing),
                "store": store.backend,
                "contacts updated": md_table(rows, ["contact", "status", "call (UTC)", "booking"]),
            }
        )

    @dg.asset(
        group_name="ingestion",
        kinds={"resend", "python"},
        owners=OWNERS,
        partitions_def=partitions,
        description=(
            "Email events received on this day (`inbox/email-events/<day>/`): Resend's "
            "delivered, opened, clicked, bounced and complained events update each "
            "message's delivery status; a hard bounce, a complaint or an unsubscribe stops "
            "every later email to that contact. Bad files are reported and kept."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "no_rejected_files",
                asset="email_events",
                description="Every email-event file of the day is a valid event.",
            )
        ],
    )
    def email_events(
        context: dg.AssetExecutionContext,
        inbox: InboxResource,
        store: StateStoreResource,
        campaign_config: CampaignResource,
    ) -> dg.MaterializeResult:
        camp = campaign_config.campaign
        day = context.partition_key
        backend = store.get()
        require_bookings(backend)
        backend.prepare(camp)
        batch = read_email_event_day(inbox.get(), day)
        for item in batch.rejected:
            context.log.warning(f"rejected {item['file']}: {item['reason']}")
        applied = apply_email_events(backend, camp, batch.events)
        check = rejected_files_check(day, batch.rejected)
        return dg.MaterializeResult(
            check_results=[check],
            metadata={
                "day": day,
                "events": len(batch.events),
                "new": applied["new"],
                "repeats": applied["repeats"],
                "rejected": len(batch.rejected),
                "ignored (other types)": batch.ignored,
                "by type": dg.MetadataValue.json(
                    counts(pd.Series([e.kind for e in batch.events], dtype=object))
                ),
                "contacts stopped": md_table(applied["flagged"], ["contact", "flag"]),
                "rejected files": md_table(batch.rejected, ["file", "reason"]),
            },
        )

    ingest_bookings = dg.define_asset_job(
        INGEST_BOOKINGS_JOB,
        selection=dg.AssetSelection.assets("bookings", "booking_state"),
        partitions_def=partitions,
        description="Validate one day of Cal.com booking files and update bookings and contacts.",
    )
    ingest_email_events = dg.define_asset_job(
        INGEST_EMAIL_EVENTS_JOB,
        selection=dg.AssetSelection.assets("email_events"),
        partitions_def=partitions,
        description="Apply one day of email events: delivery status and exit flags.",
    )
    interval = settings.sensor_interval_seconds
    sensors = [
        inbox_sensor(
            "bookings_sensor",
            "bookings",
            ingest_bookings,
            partitions,
            interval,
            "Starts a run for each inbox/bookings/<day>/ folder with new files.",
        ),
        inbox_sensor(
            "email_events_sensor",
            "email-events",
            ingest_email_events,
            partitions,
            interval,
            "Starts a run for each inbox/email-events/<day>/ folder with new files.",
        ),
    ]
    resources: dict[str, Any] = {}
    if settings.calcom_api_key:
        sensors.append(calcom_poll_sensor(campaign, max(60, interval)))
        resources["calcom"] = CalcomResource(
            api_key=_secret("CALCOM_API_KEY", settings.calcom_api_key),
            api_url=settings.calcom_api_url,
        )
    return dg.Definitions(
        assets=[bookings, booking_state, email_events],
        jobs=[ingest_bookings, ingest_email_events],
        sensors=sensors,
        resources=resources,
    )


def _secret(name: str, value: str) -> str | dg.EnvVar:
    """From the environment: as EnvVar, so the UI shows the variable's name, not the key."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() == value else value


def apply_email_events(
    backend: StateStore, campaign: Campaign, events: list[DeliveryEvent]
) -> dict[str, Any]:
    """Flags first, then the event: a crash in between is healed by the next run (setting
    a flag twice changes nothing; an event recorded is never applied again)."""
    new = 0
    flagged: list[dict[str, str]] = []
    for event in sorted(events, key=lambda e: (e.at, e.dedupe_key)):
        flags = contact_flags(event)
        if flags:
            backend.set_contact_flags(campaign, event.contact_key, event.email, **flags)
        if backend.record_delivery_event(campaign, event):
            new += 1
            if flags:
                flag = "unsubscribed" if "unsubscribed" in flags else str(flags["delivery_state"])
                flagged.append({"contact": event.contact_key, "flag": flag})
    return {"new": new, "repeats": len(events) - new, "flagged": flagged}


def calcom_poll_sensor(campaign: Campaign, interval: int) -> dg.SensorDefinition:
    first_since = datetime.fromisoformat(campaign.start_date).replace(tzinfo=UTC)

    @dg.sensor(
        name="calcom_poll_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Polls Cal.com API v2 (`GET /v2/bookings`) for bookings created or changed since "
            "the last poll and writes each new version to inbox/bookings/<today>/, where "
            "bookings_sensor ingests it. Catches changes whose webhook never arrived."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext, calcom: CalcomResource, inbox: InboxResource
    ):
        cursor = PollCursor.from_json(context.cursor)
        with calcom.client() as client:
            # A Cal.com error fails the tick, visibly, and the cursor stays where it was.
            result = poll_bookings(client, cursor, first_since=first_since)
        box = inbox.get()
        for item in result.items:
            box.write_json("bookings", {"source": API_SOURCE, "booking": item})
        for uid, reason in result.rejected:
            context.log.warning(f"Cal.com booking {uid}: {reason} (kept in the inbox)")
        context.update_cursor(result.cursor.to_json())
        return dg.SkipReason(
            f"{len(result.items)} new booking versions written to inbox/bookings/"
            if result.items
            else "no booking changes since the last poll"
        )

    return _sensor


# -- the send path ----------------------------------------------------------------------------

BOOKING_METHODS = (
    "upsert_booking_events",
    "load_bookings",
    "load_reminder_log",
    "load_contact_flags",
    "set_contact_flags",
    "record_delivery_event",
)


def keeps_bookings(backend: Any) -> bool:
    """Whether a store implements the bookings part of `StateStore` (an older or partial
    store still sends nurture emails; it just has no reminders)."""
    return all(callable(getattr(backend, name, None)) for name in BOOKING_METHODS)


def require_bookings(backend: Any) -> None:
    if not keeps_bookings(backend):
        raise dg.Failure(
            description=f"the {type(backend).__name__} state store keeps no bookings or "
            "email events yet; use the SQL store for reminders and exit flags"
        )


def contact_flags_of(backend: Any, campaign: Campaign) -> pd.DataFrame | None:
    """Contact-level exit flags, or None when the store keeps none."""
    return backend.load_contact_flags(campaign) if keeps_bookings(backend) else None


def reminder_plan(
    backend: StateStore,
    campaign: Campaign,
    now: datetime,
    sequences: pd.DataFrame,
    contacts: pd.DataFrame,
) -> pd.DataFrame:
    """The reminder rows due now, with the booker's signup fields when there is a signup."""
    if not keeps_bookings(backend):
        return empty_reminders()
    bookings = backend.load_bookings(campaign)
    if bookings.empty or not campaign.reminders:
        return empty_reminders()
    log = settled_reminders(backend.load_reminder_log(campaign))
    due = compute_due_reminders(bookings, log, campaign, now, contacts)
    if due.empty or sequences.empty:
        return due
    fields = sequences[["contact_key", *[f for f in SIGNUP_FIELDS if f != "email"]]]
    return due.merge(fields, on="contact_key", how="left")


def add_reminders(plan: pd.DataFrame, reminders: pd.DataFrame) -> pd.DataFrame:
    """Nurture and reminder rows in one plan; the reminder-only columns blank for nurture."""
    if reminders.empty:
        out = plan.copy()
    elif plan.empty:
        out = reminders.copy()
    else:
        out = pd.concat([plan, reminders], ignore_index=True)
    for name in REMINDER_EXTRA_COLUMNS:
        if name == "meeting_start":
            column = out[name] if name in out else pd.Series(pd.NaT, index=out.index)
            out[name] = pd.to_datetime(column, utc=True)
        else:
            column = out[name] if name in out else pd.Series("", index=out.index)
            out[name] = column.fillna("").astype(str)
    return out.reset_index(drop=True)


def message_context(
    row: Mapping[str, Any], campaign: Campaign, unsubscribe_url: str = ""
) -> dict[str, Any]:
    """The template variables for one plan row, nurture or reminder."""
    if row.get("kind") != "reminder":
        return nurture_context(row, campaign, unsubscribe_url)
    start = pd.Timestamp(row["meeting_start"])
    if pd.isna(start):
        raise ValueError("the reminder has no meeting time")
    return reminder_context(
        reminder_contact_fields(row),
        campaign,
        start=start.to_pydatetime(),
        time_zone=str(row.get("time_zone") or "UTC"),
        meeting_url=str(row.get("meeting_url") or ""),
        booking_uid=str(row["booking_uid"]),
        unsubscribe_url=unsubscribe_url,
    )


def booking_hold(backend: StateStore, campaign: Campaign) -> Any:
    """The last-moment check: each reminder's booking re-read just before its batch goes."""

    def check(rows: list[dict[str, Any]]) -> dict[str, str]:
        reminders = [r for r in rows if r.get("kind") == "reminder"]
        if not reminders or not keeps_bookings(backend):
            return {}
        uids = {str(r["booking_uid"]) for r in reminders}
        current = bookings_from_frame(backend.load_bookings(campaign, uids))
        held: dict[str, str] = {}
        for row in reminders:
            reason = stale_reason(row, current.get(str(row["booking_uid"])))
            if reason:
                held[row["message_id"]] = reason
        return held

    return check
