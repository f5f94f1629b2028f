"""The campaign file: name, nurture steps, reminder offsets and exit rules."""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from xmas_pipeline.core.durations import Duration
from xmas_pipeline.core.links import check_host_entry, host_of
from xmas_pipeline.core.zones import is_known_zone

# A campaign is a folder: `campaign.yaml` and its `templates/` (`core.campaign_folders`).
SHIPPED_CAMPAIGNS_DIR = Path(__file__).resolve().parent.parent / "campaigns"
DEFAULT_CAMPAIGN_SLUG = "christmas-2025"
CAMPAIGN_FILE_NAME = "campaign.yaml"
DEFAULT_CAMPAIGN_FILE = SHIPPED_CAMPAIGNS_DIR / DEFAULT_CAMPAIGN_SLUG / CAMPAIGN_FILE_NAME


class NurtureStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1)
    delay: Duration
    template: str  # base name; a segment variant is `<template>.<segment>` (lower case)
    purpose: str = ""

    @property
    def step_id(self) -> str:
        return f"email-{self.number}"


class ReminderStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1)
    before: Duration
    template: str

    @property
    def step_id(self) -> str:
        return f"reminder-{self.number}"


class ExitRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The nurture exists to get the booking: once booked, no more nurture emails.
    stop_nurture_on_booking: bool = True
    # Delivery states after which a contact gets nothing more from any step.
    stop_all_on: list[str] = ["unsubscribed", "bounced", "complained"]


def check_time_zone(name: str) -> str:
    if not is_known_zone(name) or name != name.strip():
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise ValueError(f"unknown time zone {shown!r} (an IANA name: America/Toronto)")
    return name


class SendWindow(BaseModel):
    """When later nurture emails may go out, in the reader's own local time.

    The welcome email answers the signup at once whatever the hour, and reminders keep
    their exact times; every other nurture email due outside the window waits for it.
    """

    model_config = ConfigDict(extra="forbid")

    start: time = time(8, 0)
    end: time = time(20, 0)  # a window may cross midnight (start after end)
    # The zone of a reader whose signup named none (or one we do not know).
    default_time_zone: str = "America/Toronto"

    _zone = field_validator("default_time_zone")(check_time_zone)

    def is_open(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class TestingPreset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delays: list[Duration]
    reminder_offsets: list[Duration]
    min_reminder_lead: Duration
    # Minute-scale steps: no window, and a gap no longer than the cadence.
    min_gap: Duration = timedelta(0)


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    slug: str = ""
    notion_select: str = ""  # the `Campaign` select option in Notion; defaults to the name
    # The CRM contact page's select this campaign sets (Nurture Sequence, Pre-Call Prep).
    # The CRM page is shared by every campaign, so each needs its own property; "" means
    # the deployment's default, "Christmas Campaign Status" (`adapters.notion.schema`).
    notion_status_property: str = ""
    sender_name: str = "The BusOS team"
    booking_url: str = "https://cal.com/busos/diagnostic"
    # Hosts an email may link to or load from, besides the booking page's (`core.links`);
    # a deployment adds its public URL's and XMAS_ALLOWED_LINK_HOSTS (`with_link_hosts`).
    allowed_hosts: list[str] = []
    # First day of the daily partitions (signups, bookings, deliveries).
    start_date: str = "2025-11-01"
    # The last day signups are taken, in the default time zone (`core.signups_close`).
    signups_close: date | None = None
    steps: list[NurtureStep]
    reminders: list[ReminderStep] = []
    min_reminder_lead: Duration = timedelta(hours=2)
    exit: ExitRules = ExitRules()
    # None: nurture emails go whenever they are due (the testing preset).
    send_window: SendWindow | None = SendWindow()
    # The least time between two nurture emails to one person: a catch-up after an outage
    # never sends two in a day.
    min_gap: Duration = timedelta(hours=20)
    testing: TestingPreset | None = None
    # Double opt-in (`core.optin`): a new signup gets only the confirmation email until the
    # link in it is clicked; off by default, so the quick start sends the welcome at once.
    double_opt_in: bool = False
    confirm_template: str = "confirm"
    # How long a confirmation link works; an unconfirmed signup older than this is not
    # emailed again (a new signup after that asks once more).
    confirm_ttl: Duration = timedelta(days=7)
    # The folder the campaign file was loaded from (`load_campaign`); not in the file.
    _folder: Path | None = PrivateAttr(default=None)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return [check_host_entry(host) for host in hosts]

    @model_validator(mode="after")
    def _check(self) -> Campaign:
        if not self.slug:
            self.slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.slug):
            raise ValueError(f"campaign slug {self.slug!r} must be lower-case letters, digits, -")
        if not self.notion_select:
            self.notion_select = self.name
        if self.notion_status_property != self.notion_status_property.strip():
            raise ValueError("notion_status_property may not start or end with a space")
        numbers = [s.number for s in self.steps]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError("nurture steps must be numbered 1, 2, 3, ... in order")
        delays = [s.delay for s in self.steps]
        if delays != sorted(delays):
            raise ValueError("nurture step delays must not decrease")
        if [r.number for r in self.reminders] != list(range(1, len(self.reminders) + 1)):
            raise ValueError("reminders must be numbered 1, 2, 3, ... in order")
        self._check_signups_close()
        if self.testing:
            if len(self.testing.delays) != len(self.steps):
                raise ValueError("testing.delays needs one delay per nurture step")
            if len(self.testing.reminder_offsets) != len(self.reminders):
                raise ValueError("testing.reminder_offsets needs one offset per reminder")
        return self

    def _check_signups_close(self) -> None:
        if self.signups_close is None:
            return
        try:
            start = date.fromisoformat(self.start_date)
        except ValueError:
            return  # `core.campaign_folders.date_problems` reports a bad start date
        if self.signups_close < start:
            raise ValueError(
                f"signups_close {self.signups_close} is before start_date {self.start_date}"
            )

    @property
    def folder(self) -> Path:
        """The campaign's folder; one not loaded from a file has the shipped default's."""
        return self._folder or DEFAULT_CAMPAIGN_FILE.parent

    @property
    def templates_dir(self) -> Path:
        """Its own templates: the `templates/` folder beside its campaign file."""
        return self.folder / "templates"

    def for_testing(self) -> Campaign:
        """The testing preset applied: same steps and templates, minute-scale timings."""
        if self.testing is None:
            raise ValueError(f"campaign {self.name!r} has no testing preset")
        steps = [
            s.model_copy(update={"delay": d})
            for s, d in zip(self.steps, self.testing.delays, strict=True)
        ]
        reminders = [
            r.model_copy(update={"before": o})
            for r, o in zip(self.reminders, self.testing.reminder_offsets, strict=True)
        ]
        return self.model_copy(
            update={
                "steps": steps,
                "reminders": reminders,
                "min_reminder_lead": self.testing.min_reminder_lead,
                "send_window": None,
                "min_gap": self.testing.min_gap,
            }
        )

    def link_hosts(self) -> frozenset[str]:
        """Every host an email of this campaign may point at (`core.links`)."""
        booking = host_of(self.booking_url)
        return frozenset([booking, *self.allowed_hosts] if booking else self.allowed_hosts)

    def with_link_hosts(self, hosts: list[str]) -> Campaign:
        """This campaign with a deployment's hosts allowed too."""
        merged = sorted({*self.allowed_hosts, *(check_host_entry(h) for h in hosts)})
        return self.model_copy(update={"allowed_hosts": merged})

    @property
    def last_step(self) -> int:
        return self.steps[-1].number

    def step(self, number: int) -> NurtureStep:
        return self.steps[number - 1]


def load_campaign(path: str | Path | None = None, testing_mode: bool = False) -> Campaign:
    source = Path(path) if path else DEFAULT_CAMPAIGN_FILE
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"campaign file not found: {source}") from exc
    campaign = Campaign.model_validate(raw)
    campaign._folder = source.resolve().parent
    return campaign.for_testing() if testing_mode else campaign


def message_id(campaign_slug: str, contact_key: str, step_id: str, booking_uid: str = "") -> str:
    """The stable id of one message (docs/architecture.md, "Exactly once")."""
    parts = [campaign_slug, contact_key, step_id]
    if booking_uid:
        parts.append(booking_uid)
    return "/".join(parts)
