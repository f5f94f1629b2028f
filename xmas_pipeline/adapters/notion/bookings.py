"""The Notion store's bookings, reminders and email events (`BookingLedger`).

Notion shows people what they act on; it has no place for the machine's booking history
(every Cal.com change, the reschedule chain, each reminder's skip reason, each email
event), and its request budget (about 3 a second) is too small to read all of that on
every send run. So a Notion store keeps that history in a *ledger*, an SQL store (the
embedded SQLite file by default), and mirrors into Notion what the CRM shows:

- Contacts DB: Booking Status (Booked / Not Booked), Diagnostic Call Date, Christmas
  Campaign Status = Pre-Call Prep once booked;
- Email Sequence DB: Booking UID and Meeting Time (a non-empty Booking UID is what makes a
  sequence "booked"), Reminder N Sent, Unsubscribed and Delivery Status.

Mirroring is driven by the bookings' current state, not by which events were new, and
writes only what differs: a run that stopped half way is finished by the next, and a run
with nothing new costs one contacts query per 100 touched contacts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd

from xmas_pipeline.adapters.notion.props import iso_datetime, parse_datetime
from xmas_pipeline.adapters.notion.sequences import NotionSequences
from xmas_pipeline.adapters.notion.workspace import CONTACTS, ContactPage
from xmas_pipeline.core.booking_state import (
    BOOKED,
    ContactBookingUpdate,
    bookings_from_frame,
    contact_booking_updates,
)
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent, stronger_state
from xmas_pipeline.core.ports import BookingUpsertReport

# Statuses people set after the call; a booking re-read must not undo them.
AFTER_CALL = ("Completed", "No-Show")


def _same_time(a: Any, b: datetime | None) -> bool:
    current = parse_datetime(a) if a else None
    return (iso_datetime(current) if current else None) == (iso_datetime(b) if b else None)


class NotionBookings(NotionSequences):
    def upsert_booking_events(
        self, campaign: Campaign, events: list[BookingEvent]
    ) -> BookingUpsertReport:
        self.prepare(campaign)
        report = self.ledger.upsert_booking_events(campaign, events)
        # Every contact the events name, new or repeated: a mirror left half done is finished.
        keys = {e.contact_key for e in events if e.contact_key}
        keys |= {u.contact_key for u in report.updates}
        if not keys:
            return report
        frame = self.ledger.load_bookings(campaign)
        states = bookings_from_frame(frame[frame["contact_key"].isin(keys)])
        updates = contact_booking_updates(states, keys)
        contacts = self.find_contacts({u.contact_key: u.email for u in updates})
        missing: list[str] = []
        for update in updates:
            page = contacts.get(update.contact_key)
            if page is None:
                missing.append(update.contact_key)
            else:
                self._mirror_contact(page, update)
            uid = update.booking_uid if update.booked else ""
            self.set_booking(campaign, update.contact_key, uid, update.call_date)
        return replace(report, contact_missing=sorted(missing))

    def _mirror_contact(self, page: ContactPage, update: ContactBookingUpdate) -> None:
        c = self.schema.contacts
        values = page.values
        changes: dict[str, Any] = {}
        status = values.get(c.booking_status)
        same_call = _same_time(values.get(c.diagnostic_call_date), update.call_date)
        if status in AFTER_CALL and (same_call or not update.booked):
            return  # the call happened (or was missed): people own the record now
        if status != update.booking_status:
            changes[c.booking_status] = update.booking_status
        if update.booked and not same_call:
            changes[c.diagnostic_call_date] = update.call_date
        if update.booking_status == BOOKED and values.get(c.campaign_status) != c.precall_status:
            changes[c.campaign_status] = c.precall_status
        if changes:
            self.api.update_page(page.page_id, self.encode_values(CONTACTS, changes))
            values.update(changes)

    def load_bookings(self, campaign: Campaign, uids: Iterable[str] | None = None) -> pd.DataFrame:
        return self.ledger.load_bookings(campaign, uids)

    def load_reminder_log(self, campaign: Campaign) -> pd.DataFrame:
        return self.ledger.load_reminder_log(campaign)

    def load_contact_flags(self, campaign: Campaign) -> pd.DataFrame:
        return self.ledger.load_contact_flags(campaign)

    def set_contact_flags(
        self, campaign: Campaign, contact_key: str, email: str = "", **flags: Any
    ) -> None:
        """The ledger always (a booker without a sequence page still stops), the page too."""
        self.ledger.set_contact_flags(campaign, contact_key, email, **flags)
        self.prepare(campaign)
        wanted = dict(flags)
        if "delivery_state" in wanted:
            row = self.row_for(campaign, contact_key)
            if row is None:
                return
            current = str(row.values.get(self.schema.sequences.delivery_status) or "").lower()
            wanted["delivery_state"] = stronger_state(current, str(wanted["delivery_state"]))
        self.set_flags(campaign, contact_key, **wanted)

    def record_delivery_event(self, campaign: Campaign, event: DeliveryEvent) -> bool:
        return self.ledger.record_delivery_event(campaign, event)

    def delivery_status(self, campaign: Campaign) -> pd.DataFrame:
        return self.ledger.delivery_status(campaign)
