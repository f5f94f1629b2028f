"""The Notion property names the pipeline uses (defaults: the BusOS workspace's; all
configurable), and the check that a data source has them with usable types.

Email Sequence DB, besides the original columns, needs these (added by `notion setup`):
  GPS Score, Money Score, Revenue Leak Total (number), Weakest System 1, Weakest System 2
  (rich_text): the rest of the signup, which later emails quote;
  Meeting Time (date), Booking UID (rich_text), Reminder 1..3 Sent (date): reminders;
  Unsubscribed, Paused (checkbox), Exit Reason, Last Error (rich_text),
  Delivery Status (select: bounced, complained): exit and delivery state.
Contacts DB (the CRM, shared by every campaign): each campaign's status select, named in
  its campaign file (`notion_status_property`; default "Christmas Campaign Status").
Templates DB (optional): Campaign (select), the campaign a template is for.
Email Analytics DB (optional send log): Message ID, Email, Campaign, Step, Status,
  Resend ID, Error, Segment, Due At, At, Idempotency Key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from xmas_pipeline.adapters.notion.props import COMPATIBLE_TYPES
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.segments import ALL_SEGMENTS


def _numbered(pattern: str) -> str:
    if "{n}" not in pattern:
        raise ValueError("a numbered property name needs '{n}' where the number goes")
    return pattern


class SequenceProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = "Email"
    first_name: str = "First Name"
    business_name: str = "Business Name"
    assessment_score: str = "Assessment Score"
    red_systems: str = "Red Systems"
    orange_systems: str = "Orange Systems"
    yellow_systems: str = "Yellow Systems"
    green_systems: str = "Green Systems"
    gps_score: str = "GPS Score"
    money_score: str = "Money Score"
    weakest_system_1: str = "Weakest System 1"
    weakest_system_2: str = "Weakest System 2"
    revenue_leak_total: str = "Revenue Leak Total"
    segment: str = "Segment"
    campaign: str = "Campaign"
    signup_date: str = "Signup Date"
    email_sent: str = "Email {n} Sent"
    sequence_completed: str = "Sequence Completed"
    assessment_completed: str = "Assessment Completed"
    meeting_time: str = "Meeting Time"
    booking_uid: str = "Booking UID"
    reminder_sent: str = "Reminder {n} Sent"
    unsubscribed: str = "Unsubscribed"
    paused: str = "Paused"
    exit_reason: str = "Exit Reason"
    last_error: str = "Last Error"
    delivery_status: str = "Delivery Status"

    _check_numbered = field_validator("email_sent", "reminder_sent")(_numbered)

    def sent(self, step_number: int) -> str:
        return self.email_sent.format(n=step_number)

    def reminder(self, number: int) -> str:
        return self.reminder_sent.format(n=number)


class ContactProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = "email"
    assessment_score: str = "Assessment Score"
    segment: str = "Segment"
    # The default campaign status property; a campaign names its own in its file
    # (`notion_status_property`): the CRM page is shared by every campaign.
    campaign_status: str = "Christmas Campaign Status"
    booking_status: str = "Booking Status"
    diagnostic_call_date: str = "Diagnostic Call Date"
    # Option values of `campaign_status`.
    nurture_status: str = "Nurture Sequence"
    precall_status: str = "Pre-Call Prep"


class TemplateProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "Template Name"
    subject: str = "Subject Line"
    body: str = "Email Body HTML"
    # A select naming the campaign a template is for; a page without one (or a database
    # without the property, as before campaigns) is the default campaign's.
    campaign: str = "Campaign"


class AnalyticsProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str = "Message ID"
    email: str = "Email"
    campaign: str = "Campaign"
    step: str = "Step"
    status: str = "Status"
    provider_id: str = "Resend ID"
    error: str = "Error"
    segment: str = "Segment"
    due_at: str = "Due At"
    at: str = "At"
    idempotency_key: str = "Idempotency Key"


class NotionSchema(BaseModel):
    """Every Notion property name the pipeline reads or writes."""

    model_config = ConfigDict(extra="forbid")

    sequences: SequenceProperties = SequenceProperties()
    contacts: ContactProperties = ContactProperties()
    templates: TemplateProperties = TemplateProperties()
    analytics: AnalyticsProperties = AnalyticsProperties()


@dataclass(frozen=True)
class PropSpec:
    """One property the pipeline needs: its name, what it holds, and select options."""

    name: str
    kind: str  # a key of COMPATIBLE_TYPES
    options: tuple[str, ...] = ()

    def create_config(self) -> dict[str, Any]:
        """The data-source property schema `notion setup` adds when the property is missing."""
        notion_type = COMPATIBLE_TYPES[self.kind][0]
        if notion_type == "select":
            return {"select": {"options": [{"name": o} for o in self.options]}}
        if notion_type == "number":
            return {"number": {"format": "number"}}
        return {notion_type: {}}


SEGMENT_OPTIONS = tuple(s.value for s in ALL_SEGMENTS)
DELIVERY_OPTIONS = ("bounced", "complained")


def sequence_specs(
    props: SequenceProperties, steps: int, reminders: int, campaign_option: str
) -> list[PropSpec]:
    numbers = ("assessment_score", "red_systems", "orange_systems", "yellow_systems")
    numbers += ("green_systems", "gps_score", "money_score", "revenue_leak_total")
    specs = [PropSpec(props.email, "email")]
    specs += [PropSpec(getattr(props, n), "number") for n in numbers]
    specs += [
        PropSpec(props.first_name, "text"),
        PropSpec(props.business_name, "text"),
        PropSpec(props.weakest_system_1, "text"),
        PropSpec(props.weakest_system_2, "text"),
        PropSpec(props.segment, "choice", SEGMENT_OPTIONS),
        PropSpec(props.campaign, "choice", (campaign_option,)),
        PropSpec(props.signup_date, "date"),
        *(PropSpec(props.sent(n), "date") for n in range(1, steps + 1)),
        PropSpec(props.sequence_completed, "checkbox"),
        PropSpec(props.assessment_completed, "checkbox"),
        PropSpec(props.meeting_time, "date"),
        PropSpec(props.booking_uid, "text"),
        *(PropSpec(props.reminder(n), "date") for n in range(1, reminders + 1)),
        PropSpec(props.unsubscribed, "checkbox"),
        PropSpec(props.paused, "checkbox"),
        PropSpec(props.exit_reason, "text"),
        PropSpec(props.last_error, "text"),
        PropSpec(props.delivery_status, "choice", DELIVERY_OPTIONS),
    ]
    return specs


def status_property(props: ContactProperties, campaign: Campaign) -> str:
    """The CRM select this campaign writes its status to."""
    return campaign.notion_status_property or props.campaign_status


def contact_specs(props: ContactProperties, campaign: Campaign) -> list[PropSpec]:
    statuses = (props.nurture_status, props.precall_status)
    return [
        PropSpec(props.email, "email"),
        PropSpec(props.assessment_score, "number"),
        PropSpec(props.segment, "choice", SEGMENT_OPTIONS),
        PropSpec(status_property(props, campaign), "choice", statuses),
        PropSpec(props.booking_status, "choice", ("Not Booked", "Booked", "Completed", "No-Show")),
        PropSpec(props.diagnostic_call_date, "date"),
    ]


def template_specs(props: TemplateProperties) -> list[PropSpec]:
    return [
        PropSpec(props.name, "text"),
        PropSpec(props.subject, "text"),
        PropSpec(props.body, "text"),
    ]


def template_campaign_spec(props: TemplateProperties, campaign_option: str) -> PropSpec:
    """Optional for the sync (a Templates DB without it is the default campaign's);
    `notion setup` adds it."""
    return PropSpec(props.campaign, "choice", (campaign_option,))


def analytics_specs(props: AnalyticsProperties, campaign_option: str) -> list[PropSpec]:
    return [
        PropSpec(props.message_id, "text"),
        PropSpec(props.email, "email"),
        PropSpec(props.campaign, "choice", (campaign_option,)),
        PropSpec(props.step, "text"),
        PropSpec(props.status, "choice", ("sent", "failed", "skipped")),
        PropSpec(props.provider_id, "text"),
        PropSpec(props.error, "text"),
        PropSpec(props.segment, "choice", SEGMENT_OPTIONS),
        PropSpec(props.due_at, "date"),
        PropSpec(props.at, "date"),
        PropSpec(props.idempotency_key, "text"),
    ]


@dataclass
class SchemaCheck:
    """What a data source lacks: missing names, and names whose type cannot hold the value."""

    missing: list[PropSpec] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.conflicts

    def problems(self) -> list[str]:
        return [s.name for s in self.missing] + self.conflicts


def check_properties(properties: dict[str, Any], specs: list[PropSpec]) -> SchemaCheck:
    """Compare a data source's `properties` (name -> schema) with what the pipeline needs."""
    result = SchemaCheck()
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            continue
        seen.add(spec.name)
        found = properties.get(spec.name)
        if found is None:
            result.missing.append(spec)
        elif found.get("type") not in COMPATIBLE_TYPES[spec.kind]:
            wanted = " or ".join(COMPATIBLE_TYPES[spec.kind])
            result.conflicts.append(f"{spec.name} (is {found.get('type')}, needs {wanted})")
    return result


def title_property(properties: dict[str, Any]) -> str | None:
    """The name of the data source's title property (every Notion database has one)."""
    for name, schema in properties.items():
        if schema.get("type") == "title":
            return name
    return None
