"""The Notion store's bookings, reminders and email events (`NotionStore` delegates here).

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
from typing import TYPE_CHECKING, Any

import pandas as pd

from xmas_pipeline.adapters.notion_props import iso_datetime, page_values, parse_datetime
from xmas_pipeline.adapters.store import BookingUpsertReport
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent, stronger_state
from xmas_pipeline.core.reminders import (
    BOOKED,
    ContactBookingUpdate,
    bookings_from_frame,
    contact_booking_updates,
)
from xmas_pipeline.core.signup import contact_key

if TYPE_CHECKING:
    from xmas_pipeline.adapters.notion_store import NotionStore
    from xmas_pipeline.adapters.sql_store import SqlStore

# Statuses people set after the call; a booking re-read must not undo them.
AFTER_CALL = ("Completed", "No-Show")
FILTER_CHUNK = 100


class NoLedgerError(RuntimeError):
    """The Notion store was built without its SQL ledger, which bookings need."""


def ledger_of(store: NotionStore) -> SqlStore:
    if store.ledger is None:
        raise NoLedgerError(
            "this Notion store has no SQL ledger for bookings and email events "
            "(the pipeline gives it the XMAS_DATABASE_URL store)"
        )
    return store.ledger


def upsert_booking_events(
    store: NotionStore, campaign: Campaign, events: list[BookingEvent]
) -> BookingUpsertReport:
    store.prepare(campaign)
    ledger = ledger_of(store)
    report = ledger.upsert_booking_events(campaign, events)
    # Every contact the events name, new or repeated: a mirror left half done is finished.
    keys = {e.contact_key for e in events if e.contact_key}
    keys |= {u.contact_key for u in report.updates}
    if not keys:
        return report
    frame = ledger.load_bookings(campaign)
    states = bookings_from_frame(frame[frame["contact_key"].isin(keys)])
    updates = contact_booking_updates(states, keys)
    contacts = _find_contacts(store, {u.contact_key: u.email for u in updates})
    missing: list[str] = []
    for update in updates:
        page = contacts.get(update.contact_key)
        if page is None:
            missing.append(update.contact_key)
        else:
            _mirror_contact(store, page, update)
        uid = update.booking_uid if update.booked else ""
        store.set_booking(campaign, update.contact_key, uid, update.call_date)
    return replace(report, contact_missing=sorted(missing))


def _find_contacts(
    store: NotionStore, emails: dict[str, str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """CRM contact pages by contact key: (page id, decoded values); one query per 100
    addresses, each asked as the key and as typed (a CRM may have kept its case)."""
    from xmas_pipeline.adapters.notion_store import CONTACTS

    c = store.schema.contacts
    source = store.source(CONTACTS)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    wanted = sorted({e for key, email in emails.items() for e in (key, email) if e})
    for start in range(0, len(wanted), FILTER_CHUNK):
        chunk = wanted[start : start + FILTER_CHUNK]
        conditions = [store._condition(CONTACTS, c.email, "equals", e) for e in chunk]
        query = conditions[0] if len(conditions) == 1 else {"or": conditions}
        for page in store.api.query(source.id, query):
            values = page_values(page)
            key = contact_key(str(values.get(c.email) or ""))
            if key in emails and key not in found:
                found[key] = (page["id"], values)
    return found


def _same_time(a: Any, b: datetime | None) -> bool:
    current = parse_datetime(a) if a else None
    return (iso_datetime(current) if current else None) == (iso_datetime(b) if b else None)


def _mirror_contact(
    store: NotionStore, page: tuple[str, dict[str, Any]], update: ContactBookingUpdate
) -> None:
    from xmas_pipeline.adapters.notion_store import CONTACTS

    c = store.schema.contacts
    page_id, values = page
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
        store.api.update_page(page_id, store._encode(CONTACTS, changes))
        values.update(changes)


def load_bookings(
    store: NotionStore, campaign: Campaign, uids: Iterable[str] | None = None
) -> pd.DataFrame:
    return ledger_of(store).load_bookings(campaign, uids)


def load_reminder_log(store: NotionStore, campaign: Campaign) -> pd.DataFrame:
    return ledger_of(store).load_reminder_log(campaign)


def load_contact_flags(store: NotionStore, campaign: Campaign) -> pd.DataFrame:
    return ledger_of(store).load_contact_flags(campaign)


def set_contact_flags(
    store: NotionStore, campaign: Campaign, key: str, email: str = "", **flags: Any
) -> None:
    """The ledger always (a booker without a sequence page still stops), the page too."""
    ledger_of(store).set_contact_flags(campaign, key, email, **flags)
    store.prepare(campaign)
    wanted = dict(flags)
    if "delivery_state" in wanted:
        row = store._row_for(campaign, key)
        if row is None:
            return
        current = str(row.values.get(store.schema.sequences.delivery_status) or "").lower()
        wanted["delivery_state"] = stronger_state(current, str(wanted["delivery_state"]))
    store.set_flags(campaign, key, **wanted)


def record_delivery_event(store: NotionStore, campaign: Campaign, event: DeliveryEvent) -> bool:
    return ledger_of(store).record_delivery_event(campaign, event)
