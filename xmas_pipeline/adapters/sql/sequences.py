"""The SQL store's sequences: signups, sent messages, failures and skips (`SequenceStore`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.notion_queue import mark_dirty
from xmas_pipeline.adapters.sql.optin import ask_confirmation, retake_signup
from xmas_pipeline.adapters.sql.tables import contacts, messages, outcomes, sequences
from xmas_pipeline.core.booking_state import BOOKED
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import earliest_next_due
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord, UpsertReport
from xmas_pipeline.core.sequence_frame import PROFILE_FIELDS, normalise_sequences, sent_column
from xmas_pipeline.core.signup import SignupEvent


def _contact_flags(conn: sa.Connection, campaign: Campaign, key: str) -> dict[str, Any]:
    """The exit flags a contact row holds for `key` (none when there is no row)."""
    row = (
        conn.execute(
            sa.select(
                contacts.c.unsubscribed,
                contacts.c.paused,
                contacts.c.delivery_state,
                contacts.c.booking_status,
            ).where(contacts.c.campaign == campaign.slug, contacts.c.contact_key == key)
        )
        .mappings()
        .first()
    )
    if row is None:
        return {}
    return {
        "unsubscribed": bool(row["unsubscribed"]),
        "paused": bool(row["paused"]),
        "delivery_state": row["delivery_state"] or "",
        "booked": row["booking_status"] == BOOKED,
    }


def _move_next_due(conn: sa.Connection, campaign: Campaign, key: str) -> None:
    """After a nurture email went: the sequence's `next_due_at` moves to its next unsent
    step (in the transaction that recorded the send, from every step sent so far)."""
    signup_at = conn.execute(
        sa.select(sequences.c.signup_at).where(
            sequences.c.campaign == campaign.slug, sequences.c.contact_key == key
        )
    ).scalar()
    if signup_at is None:
        return  # a booker without a sequence
    sent = conn.execute(
        sa.select(messages.c.step_number)
        .where(
            messages.c.campaign == campaign.slug,
            messages.c.contact_key == key,
            messages.c.kind == "nurture",
        )
        .distinct()
    ).scalars()
    nxt = earliest_next_due(utc(signup_at), sent, campaign)
    if nxt is None:
        return  # every step sent: the sequence is completed, and no longer read
    conn.execute(
        sequences.update()
        .where(sequences.c.campaign == campaign.slug, sequences.c.contact_key == key)
        .values(next_due_at=nxt)
    )


class SqlSequences(SqlDatabase):
    """The `SequenceStore` half of the SQL store."""

    # -- signups ---------------------------------------------------------------------------

    def upsert_signups(self, campaign: Campaign, events: list[SignupEvent]) -> UpsertReport:
        self.prepare(campaign)
        report = UpsertReport()
        now = datetime.now(UTC)
        # Earliest arrival wins for the same contact within one batch.
        ordered = sorted(events, key=lambda e: (e.received_at, e.source))
        with self.engine.begin() as conn:
            for event in ordered:
                key = event.contact_key
                signup = event.signup
                profile = {f: getattr(signup, f) for f in PROFILE_FIELDS}
                profile["segment"] = signup.segment.value
                if signup.timezone:  # a signup without one keeps the zone already known
                    profile["time_zone"] = signup.timezone
                existing = (
                    conn.execute(
                        sa.select(sequences).where(
                            sequences.c.campaign == campaign.slug, sequences.c.contact_key == key
                        )
                    )
                    .mappings()
                    .first()
                )
                if existing is None:
                    row = {
                        "campaign": campaign.slug,
                        "contact_key": key,
                        "email": key,
                        **profile,
                        # What was recorded before the signup (a booking, an unsubscribe,
                        # a bounce) is the new sequence's from the start.
                        **_contact_flags(conn, campaign, key),
                        "signup_at": utc(event.received_at),
                        "signup_day": utc(event.received_at).strftime("%Y-%m-%d"),
                        "next_due_at": earliest_next_due(utc(event.received_at), (), campaign),
                        "source": event.source,
                        "updated_at": now,
                    }
                    if campaign.double_opt_in:
                        row.update(ask_confirmation(conn, campaign, event))
                    stmt = (
                        upsert(conn, sequences)
                        .values(**row)
                        .on_conflict_do_nothing()
                        .returning(sequences.c.contact_key)
                    )
                    # RETURNING, not rowcount: psycopg reports -1 for a skipped row.
                    if conn.execute(stmt).first() is not None:
                        report.created.append(key)
                        if campaign.double_opt_in:
                            report.awaiting.append(key)
                    else:  # a concurrent writer created it first: a re-delivery
                        report.unchanged.append(key)
                else:
                    retake_signup(conn, campaign, event, dict(existing), profile, now, report)
            # Unconfirmed signups stay out of Notion: a script posting addresses must not
            # fill the team's workspace. A confirmation queues the contact.
            waiting = set(report.awaiting)
            changed = [k for k in report.created + report.updated if k not in waiting]
            mark_dirty(conn, campaign.slug, changed, now)
        return report

    # -- state -----------------------------------------------------------------------------

    def load_sequences(self, campaign: Campaign, keys: Iterable[str] | None = None) -> pd.DataFrame:
        self.prepare(campaign)
        rows = sa.select(sequences).where(sequences.c.campaign == campaign.slug)
        sent_query = (
            sa.select(
                messages.c.contact_key,
                messages.c.step_number,
                sa.func.min(messages.c.sent_at).label("sent_at"),
            )
            .where(messages.c.campaign == campaign.slug, messages.c.kind == "nurture")
            .group_by(messages.c.contact_key, messages.c.step_number)
        )
        if keys is not None:
            wanted = sorted(set(keys))
            rows = rows.where(sequences.c.contact_key.in_(wanted))
            sent_query = sent_query.where(messages.c.contact_key.in_(wanted))
        with self.engine.connect() as conn:
            frame = pd.read_sql(rows, conn)
            sent = pd.read_sql(sent_query, conn)
        if not sent.empty:
            wide = sent.pivot(index="contact_key", columns="step_number", values="sent_at")
            wide.columns = [sent_column(int(n)) for n in wide.columns]
            frame = frame.merge(wide, how="left", left_on="contact_key", right_index=True)
        return normalise_sequences(frame, len(campaign.steps))

    def sequence_counts(self, campaign: Campaign) -> tuple[int, int]:
        """(running, completed) sequences of the campaign, counted by the database."""
        self.prepare(campaign)
        query = (
            sa.select(sequences.c.completed, sa.func.count())
            .where(sequences.c.campaign == campaign.slug)
            .group_by(sequences.c.completed)
        )
        with self.engine.connect() as conn:
            found = {bool(done): int(n) for done, n in conn.execute(query)}
        return found.get(False, 0), found.get(True, 0)

    def last_nurture_elsewhere(
        self, campaign: Campaign, keys: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """The last nurture email each person got from each OTHER campaign, in one query
        (`core.due.ELSEWHERE_COLUMNS`: contact_key, campaign, sent_at), for these contacts
        or for everyone with a running sequence here."""
        self.prepare(campaign)
        query = sa.select(
            messages.c.contact_key,
            messages.c.campaign,
            sa.func.max(messages.c.sent_at).label("sent_at"),
        ).where(messages.c.kind == "nurture", messages.c.campaign != campaign.slug)
        if keys is not None:
            query = query.where(messages.c.contact_key.in_(sorted(set(keys))))
        else:
            running = sa.select(sequences.c.contact_key).where(
                sequences.c.campaign == campaign.slug, sequences.c.completed.is_(False)
            )
            query = query.where(messages.c.contact_key.in_(running))
        query = query.group_by(messages.c.contact_key, messages.c.campaign)
        return self.read_frame(query, times=("sent_at",))

    def signups_across_campaigns(self, keys: Iterable[str]) -> pd.DataFrame:
        """Every campaign these people signed up to, with when (one query): contact_key,
        campaign, signup_at."""
        self.prepare()
        wanted = sorted({k for k in keys if k})
        query = sa.select(
            sequences.c.contact_key, sequences.c.campaign, sequences.c.signup_at
        ).where(sequences.c.contact_key.in_(wanted))
        return self.read_frame(query, times=("signup_at",))

    def record_sent(self, campaign: Campaign, record: SentRecord) -> None:
        self.prepare(campaign)
        due_at = utc(record.due_at)
        with self.engine.begin() as conn:
            conn.execute(
                upsert(conn, messages)
                .values(
                    idempotency_key=record.idempotency_key,
                    campaign=campaign.slug,
                    message_id=record.message_id,
                    contact_key=record.contact_key,
                    kind=record.kind,
                    step_id=record.step_id,
                    step_number=record.step_number,
                    segment=record.segment,
                    booking_uid=record.booking_uid,
                    due_at=due_at,
                    due_day=due_at.strftime("%Y-%m-%d"),
                    sent_at=utc(record.sent_at),
                    provider_id=record.provider_id,
                    forced=record.forced,
                )
                .on_conflict_do_nothing()
            )
            # A message that finally went out is no longer a current failure.
            conn.execute(
                outcomes.delete().where(
                    outcomes.c.message_id == record.message_id, outcomes.c.status == "failed"
                )
            )
            if record.kind == "confirm":  # the open confirmation is emailed: never again
                conn.execute(
                    sequences.update()
                    .where(
                        sequences.c.campaign == campaign.slug,
                        sequences.c.contact_key == record.contact_key,
                    )
                    .values(confirm_sent_at=utc(record.sent_at))
                )
            if record.kind == "nurture":
                _move_next_due(conn, campaign, record.contact_key)
            if record.completes_sequence:
                conn.execute(
                    sequences.update()
                    .where(
                        sequences.c.campaign == campaign.slug,
                        sequences.c.contact_key == record.contact_key,
                    )
                    .values(completed=True, updated_at=datetime.now(UTC))
                )
            mark_dirty(conn, campaign.slug, [record.contact_key], datetime.now(UTC))

    def record_outcome(self, campaign: Campaign, record: OutcomeRecord) -> None:
        self.prepare(campaign)
        values = {
            "message_id": record.message_id,
            "status": record.status,
            "campaign": campaign.slug,
            "contact_key": record.contact_key,
            "kind": record.kind,
            "step_id": record.step_id,
            "step_number": record.step_number,
            "segment": record.segment,
            "booking_uid": record.booking_uid,
            "due_at": utc(record.due_at),
            "reason": record.reason,
            "at": utc(record.at),
            "attempts": 1,
        }
        with self.engine.begin() as conn:
            stmt = upsert(conn, outcomes).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[outcomes.c.message_id, outcomes.c.status],
                set_={
                    "reason": stmt.excluded.reason,
                    "at": stmt.excluded.at,
                    "attempts": outcomes.c.attempts + 1,
                },
            )
            conn.execute(stmt)
            if record.status == "failed":  # Notion shows failures (Last Error), not skips
                mark_dirty(conn, campaign.slug, [record.contact_key], utc(record.at))

    def record_exit(self, campaign: Campaign, contact_key: str, reason: str) -> None:
        self.prepare(campaign)
        with self.engine.begin() as conn:
            conn.execute(
                sequences.update()
                .where(
                    sequences.c.campaign == campaign.slug, sequences.c.contact_key == contact_key
                )
                .values(completed=True, exit_reason=reason, updated_at=datetime.now(UTC))
            )
            mark_dirty(conn, campaign.slug, [contact_key], datetime.now(UTC))

    def set_flags(self, campaign: Campaign, contact_key: str, **flags: Any) -> bool:
        """Set exit flags (booked, unsubscribed, paused, delivery_state). False: no contact."""
        allowed = {"booked", "unsubscribed", "paused", "delivery_state"}
        unknown = set(flags) - allowed
        if unknown:
            raise ValueError(f"unknown flags: {sorted(unknown)}")
        self.prepare(campaign)
        with self.engine.begin() as conn:
            result = conn.execute(
                sequences.update()
                .where(
                    sequences.c.campaign == campaign.slug, sequences.c.contact_key == contact_key
                )
                .values(**flags, updated_at=datetime.now(UTC))
            )
            if result.rowcount:
                mark_dirty(conn, campaign.slug, [contact_key], datetime.now(UTC))
        return bool(result.rowcount)

    def sent_log(self, campaign: Campaign, start_day: str, end_day: str) -> pd.DataFrame:
        query = (
            sa.select(messages)
            .where(
                messages.c.campaign == campaign.slug,
                messages.c.due_day >= start_day,
                messages.c.due_day <= end_day,
            )
            .order_by(messages.c.due_at, messages.c.message_id)
        )
        return self.read_frame(query, times=("due_at", "sent_at"))

    def outcomes(
        self, campaign: Campaign, statuses: Iterable[str] = ("failed", "skipped")
    ) -> pd.DataFrame:
        """Failures and skips with their reasons, newest first (for the UI and checks)."""
        query = (
            sa.select(outcomes)
            .where(outcomes.c.campaign == campaign.slug, outcomes.c.status.in_(list(statuses)))
            .order_by(outcomes.c.at.desc())
        )
        return self.read_frame(query, times=("due_at", "at"))
