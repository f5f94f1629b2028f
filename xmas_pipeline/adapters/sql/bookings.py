"""The SQL store's bookings, contacts and email events (`BookingLedger`); the tables are
described in `adapters.sql.tables`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from xmas_pipeline.adapters.sql.engine import SqlDatabase, lock_campaign, upsert, utc
from xmas_pipeline.adapters.sql.forget import forgotten_among, suppress_forgotten
from xmas_pipeline.adapters.sql.notion_queue import mark_dirty
from xmas_pipeline.adapters.sql.tables import (
    booking_events,
    bookings,
    contacts,
    message_events,
    message_status,
    messages,
    outcomes,
    sequences,
)
from xmas_pipeline.core.booking_state import (
    BOOKED,
    BOOKING_COLUMNS,
    BookingState,
    bookings_from_frame,
    contact_booking_updates,
    empty_bookings,
    fold_booking_events,
    normalise_bookings,
)
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent, stronger_state
from xmas_pipeline.core.ports import BookingUpsertReport
from xmas_pipeline.core.sequence_frame import as_bool
from xmas_pipeline.core.suppression import (
    RECORD_COLUMNS,
    SUPPRESSING_EVENTS,
    merge_across_campaigns,
)

CONTACT_FLAG_COLUMNS = ["contact_key", "unsubscribed", "paused", "delivery_state"]
REMINDER_LOG_COLUMNS = ["booking_uid", "step_number", "status", "reason", "due_at"]


def _read_bookings(
    conn: Connection, campaign: Campaign, uids: Iterable[str] | None
) -> pd.DataFrame:
    query = sa.select(*(bookings.c[name] for name in BOOKING_COLUMNS)).where(
        bookings.c.campaign == campaign.slug
    )
    if uids is not None:
        wanted = sorted(set(uids))
        if not wanted:
            return empty_bookings()
        query = query.where(bookings.c.booking_uid.in_(wanted))
    frame = pd.read_sql(query, conn)
    return normalise_bookings(frame) if not frame.empty else empty_bookings()


def _booking_row(campaign: Campaign, state: BookingState) -> dict[str, Any]:
    row = state.model_dump()
    row["campaign"] = campaign.slug
    for name in ("start", "end", "received_at", "updated_at"):
        if row[name] is not None:
            row[name] = utc(row[name])
    return row


def _upsert_contact(conn: Connection, campaign: Campaign, key: str, values: dict[str, Any]) -> None:
    stmt = upsert(conn, contacts).values(campaign=campaign.slug, contact_key=key, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[contacts.c.campaign, contacts.c.contact_key], set_=values
    )
    conn.execute(stmt)


def _suppression_query(campaign: Campaign | None, keys: list[str] | None) -> sa.Select[Any]:
    """One query for every flag record of these people in any campaign
    (`core.suppression.RECORD_COLUMNS`): sequence rows, contact rows and the message
    events that suppress. Without keys: the people this campaign knows (a sequence or a
    contact row here). Only rows that say something are read."""
    seq = sa.select(
        sequences.c.campaign,
        sequences.c.contact_key,
        sequences.c.unsubscribed,
        sequences.c.delivery_state,
        sequences.c.booked,
    ).where(sa.or_(sequences.c.unsubscribed, sequences.c.delivery_state != "", sequences.c.booked))
    booked = contacts.c.booking_status == BOOKED
    con = sa.select(
        contacts.c.campaign,
        contacts.c.contact_key,
        contacts.c.unsubscribed,
        contacts.c.delivery_state,
        booked.label("booked"),
    ).where(sa.or_(contacts.c.unsubscribed, contacts.c.delivery_state != "", booked))
    kind = message_events.c.kind
    events = sa.select(
        message_events.c.campaign,
        message_events.c.contact_key,
        (kind == "unsubscribed").label("unsubscribed"),
        sa.case((kind.in_(["bounced", "complained"]), kind), else_="").label("delivery_state"),
        sa.false().label("booked"),
    ).where(kind.in_(sorted(SUPPRESSING_EVENTS)))
    every = sa.union_all(seq, con, events).subquery("flag_records")
    if keys is not None or campaign is None:
        wanted: Any = sorted(set(keys or ()))
    else:
        wanted = sa.union(
            sa.select(sequences.c.contact_key).where(sequences.c.campaign == campaign.slug),
            sa.select(contacts.c.contact_key).where(contacts.c.campaign == campaign.slug),
        )
    return sa.select(*(every.c[name] for name in RECORD_COLUMNS)).where(
        every.c.contact_key.in_(wanted)
    )


class SqlBookings(SqlDatabase):
    """The `BookingLedger` half of the SQL store."""

    def upsert_booking_events(
        self, campaign: Campaign, events: list[BookingEvent]
    ) -> BookingUpsertReport:
        self.prepare(campaign)
        now = datetime.now(UTC)
        unique = list({e.dedupe_key: e for e in events}.values())
        with self.engine.begin() as conn:
            lock_campaign(conn, campaign.slug)
            new: list[BookingEvent] = []
            for event in unique:
                stmt = (
                    upsert(conn, booking_events)
                    .values(
                        campaign=campaign.slug,
                        event_key=event.dedupe_key,
                        booking_uid=event.uid,
                        kind=event.kind,
                        event_at=utc(event.event_at),
                        source=event.source,
                        ref=event.ref[:500],
                        body=event.model_dump_json(),
                        ingested_at=now,
                    )
                    .on_conflict_do_nothing()
                    # RETURNING, not rowcount: rowcount is not reliable for ON CONFLICT everywhere.
                    .returning(booking_events.c.event_key)
                )
                if conn.execute(stmt).first() is not None:
                    new.append(event)
            if not new:
                return BookingUpsertReport(new_events=0, repeats=len(events))

            touched = {u for e in new for u in (e.uid, e.previous_uid, e.rescheduled_to) if u}
            before = bookings_from_frame(_read_bookings(conn, campaign, touched))
            after = fold_booking_events(new, before)
            changed = {uid: s for uid, s in after.items() if before.get(uid) != s}
            for uid, state in changed.items():
                row = _booking_row(campaign, state)
                if uid in before:
                    conn.execute(
                        bookings.update()
                        .where(bookings.c.campaign == campaign.slug, bookings.c.booking_uid == uid)
                        .values(
                            **{k: v for k, v in row.items() if k not in ("campaign", "booking_uid")}
                        )
                    )
                else:
                    conn.execute(bookings.insert().values(**row))

            keys = {s.contact_key for s in changed.values() if s.contact_key}
            everyone = (
                bookings_from_frame(
                    pd.read_sql(
                        sa.select(*(bookings.c[name] for name in BOOKING_COLUMNS)).where(
                            bookings.c.campaign == campaign.slug,
                            bookings.c.contact_key.in_(sorted(keys)),
                        ),
                        conn,
                    )
                )
                if keys
                else {}
            )
            updates = contact_booking_updates(everyone, keys)
            for update in updates:
                values = {
                    "email": update.email,
                    "booking_status": update.booking_status,
                    "call_date": utc(update.call_date) if update.call_date else None,
                    "booking_uid": update.booking_uid,
                    "updated_at": now,
                }
                if update.campaign_status:
                    values["campaign_status"] = update.campaign_status
                _upsert_contact(conn, campaign, update.contact_key, values)
                # The nurture's exit rule reads `booked` on the sequence (when there is one).
                conn.execute(
                    sequences.update()
                    .where(
                        sequences.c.campaign == campaign.slug,
                        sequences.c.contact_key == update.contact_key,
                    )
                    .values(booked=update.booked, updated_at=now)
                )
            mark_dirty(conn, campaign.slug, [u.contact_key for u in updates], now)
        return BookingUpsertReport(
            new_events=len(new),
            repeats=len(events) - len(new),
            bookings=sorted(changed),
            updates=updates,
        )

    def load_bookings(self, campaign: Campaign, uids: Iterable[str] | None = None) -> pd.DataFrame:
        self.prepare(campaign)
        with self.engine.connect() as conn:
            return _read_bookings(conn, campaign, uids)

    def booking_campaigns(self, uids: Iterable[str]) -> dict[str, str]:
        """The campaign each of these bookings is already kept under (one query): a later
        change to a booking (a cancellation, a reschedule) follows it there."""
        self.prepare()
        wanted = sorted({u for u in uids if u})
        if not wanted:
            return {}
        query = (
            sa.select(bookings.c.booking_uid, bookings.c.campaign)
            .where(bookings.c.booking_uid.in_(wanted))
            .order_by(bookings.c.received_at)
        )
        with self.engine.connect() as conn:
            # A booking kept under two campaigns (from before this rule): the first one.
            found: dict[str, str] = {}
            for uid, slug in conn.execute(query):
                found.setdefault(str(uid), str(slug))
        return found

    def load_contact_bookings(self, campaign: Campaign) -> pd.DataFrame:
        """What the CRM shows per contact: booking status, call date, campaign status, uid."""
        query = sa.select(
            contacts.c.contact_key,
            contacts.c.email,
            contacts.c.booking_status,
            contacts.c.call_date,
            contacts.c.campaign_status,
            contacts.c.booking_uid,
        ).where(contacts.c.campaign == campaign.slug, contacts.c.booking_status != "")
        return self.read_frame(query, times=("call_date",))

    def load_reminder_log(self, campaign: Campaign) -> pd.DataFrame:
        """Every reminder sent, skipped or failed: `REMINDER_LOG_COLUMNS`."""
        self.prepare(campaign)
        with self.engine.connect() as conn:
            sent = pd.read_sql(
                sa.select(messages.c.booking_uid, messages.c.step_number, messages.c.due_at).where(
                    messages.c.campaign == campaign.slug, messages.c.kind == "reminder"
                ),
                conn,
            )
            held = pd.read_sql(
                sa.select(
                    outcomes.c.booking_uid,
                    outcomes.c.step_number,
                    outcomes.c.status,
                    outcomes.c.reason,
                    outcomes.c.due_at,
                ).where(outcomes.c.campaign == campaign.slug, outcomes.c.kind == "reminder"),
                conn,
            )
        sent = sent.assign(status="sent", reason="")
        frame = pd.concat([sent, held], ignore_index=True) if not held.empty else sent
        frame = frame.reindex(columns=REMINDER_LOG_COLUMNS)
        frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True, format="ISO8601")
        return frame

    def load_contact_flags(
        self, campaign: Campaign, keys: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Exit flags kept on contact rows (`CONTACT_FLAG_COLUMNS`, plus `booked`: the
        contact has an active booking), of every contact or of these, with what any
        campaign recorded for the same people merged in (`core.suppression`): an
        unsubscribe, a hard bounce, a complaint or an active booking anywhere counts here."""
        self.prepare(campaign)
        query = sa.select(
            *(contacts.c[name] for name in CONTACT_FLAG_COLUMNS), contacts.c.booking_status
        ).where(contacts.c.campaign == campaign.slug)
        wanted = sorted(set(keys)) if keys is not None else None
        if wanted is not None:
            query = query.where(contacts.c.contact_key.in_(wanted))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
            records = pd.read_sql(_suppression_query(campaign, wanted), conn)
            # A forgotten address is never emailed again: it reads as unsubscribed.
            known = set(frame["contact_key"].astype(str)) | set(records["contact_key"].astype(str))
            gone = forgotten_among(conn, known if wanted is None else wanted)
        for name in ("unsubscribed", "paused"):
            frame[name] = as_bool(frame[name])
        frame["delivery_state"] = frame["delivery_state"].fillna("").astype(str)
        frame["booked"] = frame.pop("booking_status").fillna("").astype(str) == BOOKED
        return suppress_forgotten(merge_across_campaigns(frame, records), gone)

    def contact_flags_of(self, slugs: Sequence[str], keys: Iterable[str]) -> pd.DataFrame:
        """`load_contact_flags` of these contacts in several campaigns at once (one read of
        each table, whatever the number of campaigns), with a `campaign` column."""
        wanted = sorted(set(keys))
        query = sa.select(
            contacts.c.campaign,
            *(contacts.c[name] for name in CONTACT_FLAG_COLUMNS),
            contacts.c.booking_status,
        ).where(contacts.c.campaign.in_(list(slugs)), contacts.c.contact_key.in_(wanted))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
            # Without a campaign the query reads only these keys: any campaign's records.
            records = pd.read_sql(_suppression_query(None, wanted), conn)
            gone = forgotten_among(conn, wanted)
        for name in ("unsubscribed", "paused"):
            frame[name] = as_bool(frame[name])
        frame["delivery_state"] = frame["delivery_state"].fillna("").astype(str)
        frame["booked"] = frame.pop("booking_status").fillna("").astype(str) == BOOKED
        if records.empty and not gone:
            # Nothing recorded anywhere to fold in (the usual case): each campaign's rows
            # as they are, normalised once for all, campaign by campaign.
            order = {slug: n for n, slug in enumerate(slugs)}
            rank = frame["campaign"].map(order).to_numpy()
            everything = merge_across_campaigns(frame, records)
            everything["campaign"] = frame["campaign"].to_numpy()
            return everything.take(np.argsort(rank, kind="stable")).reset_index(drop=True)
        parts = [
            suppress_forgotten(
                merge_across_campaigns(frame[frame["campaign"] == slug], records), gone
            ).assign(campaign=slug)
            for slug in slugs
        ]
        return pd.concat(parts, ignore_index=True)

    def set_contact_flags(
        self, campaign: Campaign, contact_key: str, email: str = "", **flags: Any
    ) -> None:
        allowed = {"unsubscribed", "paused", "delivery_state"}
        unknown = set(flags) - allowed
        if unknown:
            raise ValueError(f"unknown flags: {sorted(unknown)}")
        self.prepare(campaign)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            current = (
                conn.execute(
                    sa.select(contacts.c.delivery_state).where(
                        contacts.c.campaign == campaign.slug, contacts.c.contact_key == contact_key
                    )
                )
                .scalars()
                .first()
            )
            values = dict(flags)
            if "delivery_state" in values:
                values["delivery_state"] = stronger_state(current or "", values["delivery_state"])
            if email:
                values["email"] = email
            _upsert_contact(conn, campaign, contact_key, {**values, "updated_at": now})

            seq_values = {k: v for k, v in flags.items()}
            if "delivery_state" in seq_values:
                existing = (
                    conn.execute(
                        sa.select(sequences.c.delivery_state).where(
                            sequences.c.campaign == campaign.slug,
                            sequences.c.contact_key == contact_key,
                        )
                    )
                    .scalars()
                    .first()
                )
                seq_values["delivery_state"] = stronger_state(
                    existing or "", seq_values["delivery_state"]
                )
            conn.execute(
                sequences.update()
                .where(
                    sequences.c.campaign == campaign.slug, sequences.c.contact_key == contact_key
                )
                .values(**seq_values, updated_at=now)
            )
            mark_dirty(conn, campaign.slug, [contact_key], now)

    def record_delivery_event(self, campaign: Campaign, event: DeliveryEvent) -> bool:
        """Store one email event and move its message's status up. False: seen before."""
        self.prepare(campaign)
        with self.engine.begin() as conn:
            message_id = ""
            if event.provider_id:
                message_id = (
                    conn.execute(
                        sa.select(messages.c.message_id).where(
                            messages.c.campaign == campaign.slug,
                            messages.c.provider_id == event.provider_id,
                        )
                    )
                    .scalars()
                    .first()
                ) or ""
            inserted = conn.execute(
                upsert(conn, message_events)
                .values(
                    campaign=campaign.slug,
                    event_key=event.dedupe_key[:700],
                    provider_id=event.provider_id,
                    message_id=message_id,
                    contact_key=event.contact_key,
                    kind=event.kind,
                    at=utc(event.at),
                    detail=event.detail,
                    ref=event.ref[:500],
                )
                .on_conflict_do_nothing()
                .returning(message_events.c.event_key)
            ).first()
            if inserted is None:
                return False
            if event.provider_id:
                values = {
                    "message_id": message_id,
                    "contact_key": event.contact_key,
                    "status": event.kind,
                    "rank": event.rank,
                    "status_at": utc(event.at),
                }
                stmt = upsert(conn, message_status).values(
                    campaign=campaign.slug, provider_id=event.provider_id, **values
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=[message_status.c.campaign, message_status.c.provider_id],
                    set_=values,
                    where=message_status.c.rank < stmt.excluded.rank,
                )
                conn.execute(stmt)
        return True

    def delivery_status(self, campaign: Campaign) -> pd.DataFrame:
        """Each sent message's delivery status (Resend's email id, our message id)."""
        query = sa.select(
            message_status.c.provider_id,
            message_status.c.message_id,
            message_status.c.contact_key,
            message_status.c.status,
            message_status.c.status_at,
        ).where(message_status.c.campaign == campaign.slug)
        return self.read_frame(query, times=("status_at",))
