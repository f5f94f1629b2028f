"""`resend_contact`: send chosen steps to one person now, from the launchpad.

For the support case "Jane never got email 3": ops type her address and the steps in the
launchpad config, and the emails go out through the same send path as the schedule's,
under fresh idempotency keys (`<message id>/resend-<run id>`), recorded as forced.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import EmailStr, Field, TypeAdapter, ValidationError

from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.context import nurture_context, reminder_context
from xmas_pipeline.core.due import SEND
from xmas_pipeline.core.reminders import normalise_bookings
from xmas_pipeline.core.render import Renderer
from xmas_pipeline.core.signup import contact_key
from xmas_pipeline.core.state import SIGNUP_FIELDS
from xmas_pipeline.dagster_defs.metadata import md_table
from xmas_pipeline.dagster_defs.resources import (
    CampaignResource,
    EmailSenderResource,
    StateStoreResource,
)
from xmas_pipeline.delivery import DeliveryReport, Envelope, deliver

RESEND_JOB = "resend_contact"
_EMAIL = TypeAdapter(EmailStr)
_STEP = re.compile(r"(email|reminder)-([1-9][0-9]?)")


class ResendConfig(dg.Config):
    """What the launchpad asks for."""

    email: str = Field(description="The contact's email address, as they signed up.")
    steps: list[str] = Field(
        description='Steps to send again, e.g. ["email-3"] or ["email-1", "reminder-2"].'
    )


class ResendRefused(ValueError):
    """The request cannot be carried out as asked; the message says why."""


def check_email(value: str) -> str:
    """The contact key of a launchpad address, or ResendRefused."""
    try:
        _EMAIL.validate_python(value.strip())
    except ValidationError:
        raise ResendRefused(f"{value!r} is not an email address") from None
    return contact_key(value)


def check_steps(campaign: Campaign, steps: list[str]) -> list[str]:
    """The requested step ids, each known to the campaign, in order, without repeats."""
    if not steps:
        raise ResendRefused("no steps given: list at least one, e.g. steps: [email-3]")
    known = [s.step_id for s in campaign.steps] + [r.step_id for r in campaign.reminders]
    wanted = list(dict.fromkeys(step.strip().lower() for step in steps))
    unknown = [s for s in wanted if s not in known or not _STEP.fullmatch(s)]
    if unknown:
        raise ResendRefused(
            f"unknown step(s) {', '.join(unknown)}; this campaign has {', '.join(known)}"
        )
    return wanted


def contact_row(sequences: pd.DataFrame, key: str) -> dict[str, Any]:
    """The contact's sequence row, refused when they must not be emailed."""
    rows = sequences[sequences["contact_key"] == key]
    if rows.empty:
        raise ResendRefused(f"no contact {key} in this campaign")
    row = rows.iloc[0].to_dict()
    if row["unsubscribed"]:
        raise ResendRefused(f"{key} has unsubscribed: nothing may be sent to them")
    if row["delivery_state"]:
        raise ResendRefused(
            f"{key}'s address is marked {row['delivery_state']}: nothing may be sent to it"
        )
    return row


def current_booking(bookings: pd.DataFrame | None, key: str) -> dict[str, Any]:
    """The contact's active booking (the latest by start), for a reminder's details."""
    if bookings is None:
        raise ResendRefused("reminders need the contact's booking, and this state store keeps none")
    frame = normalise_bookings(bookings)
    mine = frame[
        (frame["contact_key"] == key) & (frame["status"] == "active") & frame["start"].notna()
    ]
    if mine.empty:
        raise ResendRefused(f"{key} has no active booking: there is no call to remind them of")
    return mine.sort_values("start").iloc[-1].to_dict()


def resend_plan(
    campaign: Campaign,
    contact: Mapping[str, Any],
    steps: list[str],
    now: datetime,
    bookings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One plan row per step (the columns `deliver` reads), all to be sent.

    A message keeps its own id and due time, so it is filed under its original due day;
    only the idempotency key is fresh (set by the caller). A step not yet due is refused:
    sent early, it would count as sent and the schedule would never send it on time (and
    the last email would end the sequence).
    """
    key = str(contact["contact_key"])
    base = {f: contact[f] for f in SIGNUP_FIELDS}
    rows: list[dict[str, Any]] = []
    for step_id in steps:
        kind, number = _STEP.fullmatch(step_id).groups()  # type: ignore[union-attr]
        row: dict[str, Any] = {
            **base,
            "contact_key": key,
            "kind": "nurture" if kind == "email" else "reminder",
            "step_id": step_id,
            "step_number": int(number),
            "segment": contact["segment"],
            "action": SEND,
            "reason": "re-sent from the resend_contact job",
        }
        if kind == "email":
            due_at = pd.Timestamp(contact["signup_at"]) + campaign.step(int(number)).delay
            row.update(message_id=message_id(campaign.slug, key, step_id), booking_uid="")
        else:
            booking = current_booking(bookings, key)
            due_at = booking["start"] - campaign.reminders[int(number) - 1].before
            row.update(
                message_id=message_id(campaign.slug, key, step_id, booking["booking_uid"]),
                booking_uid=booking["booking_uid"],
                meeting_start=booking["start"],
                time_zone=booking["time_zone"],
                meeting_url=booking["meeting_url"],
            )
        if due_at > pd.Timestamp(now):
            raise ResendRefused(
                f"{step_id} is not due for {key} until {due_at:%Y-%m-%d %H:%M} UTC; "
                "the schedule sends it then"
            )
        row.update(due_at=due_at, due_day=due_at.strftime("%Y-%m-%d"))
        rows.append(row)
    return pd.DataFrame(rows)


def context_builder(campaign: Campaign, sender: EmailSenderResource) -> Any:
    def build(row: Mapping[str, Any]) -> dict[str, Any]:
        unsubscribe = sender.unsubscribe_link(row["email"]) or ""
        if row["kind"] == "nurture":
            return nurture_context(row, campaign, unsubscribe)
        return reminder_context(
            row,
            campaign,
            start=pd.Timestamp(row["meeting_start"]).to_pydatetime(),
            time_zone=row["time_zone"],
            meeting_url=row["meeting_url"],
            booking_uid=row["booking_uid"],
            unsubscribe_url=unsubscribe,
        )

    return build


def report_metadata(report: DeliveryReport, email: str, steps: list[str]) -> dict[str, Any]:
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


def build_resend_job(tags: Mapping[str, str]) -> dg.JobDefinition:
    @dg.op(
        name="resend_to_contact",
        description="Send the chosen steps to one contact now, under fresh idempotency keys.",
    )
    def resend_to_contact(
        context: dg.OpExecutionContext,
        config: ResendConfig,
        store: StateStoreResource,
        sender: EmailSenderResource,
        campaign_config: CampaignResource,
    ) -> dg.Output[int]:
        camp = campaign_config.campaign
        backend = store.get()
        backend.prepare(camp)
        try:
            key = check_email(config.email)
            steps = check_steps(camp, config.steps)
            contact = contact_row(backend.load_sequences(camp), key)
            needs_booking = any(s.startswith("reminder-") for s in steps)
            bookings = backend.load_bookings(camp) if needs_booking else None
            now = datetime.now(UTC)
            plan = resend_plan(camp, contact, steps, now, bookings)
        except ResendRefused as exc:
            raise dg.Failure(description=f"Not sent: {exc}") from None
        report = deliver(
            store=backend,
            sender=sender.get(),
            renderer=Renderer(store.templates()),
            campaign=camp,
            plan=plan,
            context_for=context_builder(camp, sender),
            envelope=Envelope(
                from_email=sender.from_email,
                unsubscribe_url=sender.unsubscribe_link if sender.public_url else None,
            ),
            now=now,
            idempotency_suffix=f"/resend-{context.run_id[:8]}",
        )
        metadata = report_metadata(report, key, steps)
        if report.failed or report.retry or report.stopped:
            reasons = "; ".join(f"{p['step_id']}: {p['reason']}" for p in report.failed)
            reasons = reasons or "; ".join(f"{p['step_id']}: {p['reason']}" for p in report.retry)
            raise dg.Failure(
                description=f"Not everything was sent: {report.stopped or reasons}",
                metadata=metadata,
            )
        context.log.info(f"re-sent {', '.join(steps)} to {key}")
        return dg.Output(len(report.sent), metadata=metadata)

    @dg.job(
        name=RESEND_JOB,
        tags=dict(tags),
        description=(
            "Re-send chosen emails to one person now. In the launchpad set "
            "`email` and `steps` (e.g. [email-3]). Refused for an unknown contact or step, "
            "and for anyone unsubscribed or whose address bounced."
        ),
    )
    def resend_contact() -> None:
        resend_to_contact()

    return resend_contact
