"""The SQL state store: SQLite in `XMAS_HOME` by default, any SQLAlchemy URL otherwise.

Tables (created on first use):
- `sequences`: one row per (campaign, contact): the signup, the segment, exit flags.
- `messages`: one row per accepted send (unique idempotency key); sent-status is derived
  from it, so a row exists only once the provider accepted the message.
- `outcomes`: the latest failure or skip per (message, status), with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from xmas_pipeline.adapters.store import (
    BookingUpsertReport,
    OutcomeRecord,
    SentRecord,
    UpsertReport,
)
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.core.signup import SignupEvent
from xmas_pipeline.core.state import SIGNUP_FIELDS, normalise_sequences, sent_column

metadata = sa.MetaData()

sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("campaign", sa.String(100), primary_key=True),
    sa.Column("contact_key", sa.String(320), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("first_name", sa.String(200), nullable=False, default=""),
    sa.Column("business_name", sa.String(200), nullable=False, default=""),
    sa.Column("assessment_score", sa.Integer, nullable=False, default=0),
    sa.Column("red_systems", sa.Integer, nullable=False, default=0),
    sa.Column("orange_systems", sa.Integer, nullable=False, default=0),
    sa.Column("yellow_systems", sa.Integer, nullable=False, default=0),
    sa.Column("green_systems", sa.Integer, nullable=False, default=0),
    sa.Column("gps_score", sa.Integer, nullable=False, default=0),
    sa.Column("money_score", sa.Integer, nullable=False, default=0),
    sa.Column("weakest_system_1", sa.String(200), nullable=False, default=""),
    sa.Column("weakest_system_2", sa.String(200), nullable=False, default=""),
    sa.Column("revenue_leak_total", sa.BigInteger, nullable=False, default=0),
    sa.Column("segment", sa.String(20), nullable=False),
    sa.Column("signup_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("signup_day", sa.String(10), nullable=False, index=True),
    sa.Column("source", sa.String(500), nullable=False, default=""),
    sa.Column("completed", sa.Boolean, nullable=False, default=False),
    sa.Column("exit_reason", sa.String(100), nullable=False, default=""),
    sa.Column("booked", sa.Boolean, nullable=False, default=False),
    sa.Column("unsubscribed", sa.Boolean, nullable=False, default=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("delivery_state", sa.String(20), nullable=False, default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("idempotency_key", sa.String(600), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False),
    sa.Column("message_id", sa.String(600), nullable=False, index=True),
    sa.Column("contact_key", sa.String(320), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("step_id", sa.String(40), nullable=False),
    sa.Column("step_number", sa.Integer, nullable=False),
    sa.Column("segment", sa.String(20), nullable=False, default=""),
    sa.Column("booking_uid", sa.String(200), nullable=False, default=""),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_day", sa.String(10), nullable=False, index=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provider_id", sa.String(200), nullable=False, default=""),
    sa.Column("forced", sa.Boolean, nullable=False, default=False),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("message_id", sa.String(600), primary_key=True),
    sa.Column("status", sa.String(20), primary_key=True),
    sa.Column("campaign", sa.String(100), nullable=False),
    sa.Column("contact_key", sa.String(320), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("step_id", sa.String(40), nullable=False),
    sa.Column("step_number", sa.Integer, nullable=False),
    sa.Column("segment", sa.String(20), nullable=False, default=""),
    sa.Column("booking_uid", sa.String(200), nullable=False, default=""),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
)

_PROFILE_FIELDS = tuple(f for f in SIGNUP_FIELDS if f != "email")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the UI's readers and a send run's writer work side by side.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _insert(conn: Connection, table: sa.Table) -> Any:
    """A dialect INSERT that supports ON CONFLICT DO NOTHING."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(
        f"the SQL store supports SQLite and PostgreSQL, not {conn.dialect.name}"
    )


def _utc(moment: Any) -> datetime:
    value = pd.Timestamp(moment)
    value = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
    return value.to_pydatetime()


class SqlStore:
    """`StateStore` over SQLAlchemy Core."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._prepared = False

    def prepare(self, campaign: Campaign | None = None) -> None:
        if self._prepared:
            return
        from xmas_pipeline.adapters import sql_bookings  # noqa: F401 - registers its tables

        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                break
            except sa.exc.OperationalError:
                # Several runs starting at once on a fresh SQLite file race to create the
                # schema ("database is locked"); the loser waits and then finds it made.
                if attempt == 4 or not self.url.startswith("sqlite"):
                    raise
                time.sleep(0.2 * (attempt + 1))
        self._prepared = True

    def dispose(self) -> None:
        self.engine.dispose()

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
                profile = {f: getattr(signup, f) for f in _PROFILE_FIELDS}
                profile["segment"] = signup.segment.value
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
                        "signup_at": _utc(event.received_at),
                        "signup_day": _utc(event.received_at).strftime("%Y-%m-%d"),
                        "source": event.source,
                        "updated_at": now,
                    }
                    stmt = (
                        _insert(conn, sequences)
                        .values(**row)
                        .on_conflict_do_nothing()
                        .returning(sequences.c.contact_key)
                    )
                    # RETURNING, not rowcount: psycopg reports -1 for a skipped row.
                    if conn.execute(stmt).first() is not None:
                        report.created.append(key)
                    else:  # a concurrent writer created it first: a re-delivery
                        report.unchanged.append(key)
                elif all(existing[f] == v for f, v in profile.items()):
                    report.unchanged.append(key)
                else:
                    # A new assessment refreshes the profile; the sequence keeps its clock.
                    conn.execute(
                        sequences.update()
                        .where(
                            sequences.c.campaign == campaign.slug, sequences.c.contact_key == key
                        )
                        .values(**profile, updated_at=now)
                    )
                    report.updated.append(key)
        return report

    # -- state -----------------------------------------------------------------------------

    def load_sequences(self, campaign: Campaign) -> pd.DataFrame:
        self.prepare(campaign)
        with self.engine.connect() as conn:
            frame = pd.read_sql(
                sa.select(sequences).where(sequences.c.campaign == campaign.slug), conn
            )
            sent = pd.read_sql(
                sa.select(
                    messages.c.contact_key,
                    messages.c.step_number,
                    sa.func.min(messages.c.sent_at).label("sent_at"),
                )
                .where(messages.c.campaign == campaign.slug, messages.c.kind == "nurture")
                .group_by(messages.c.contact_key, messages.c.step_number),
                conn,
            )
        if not sent.empty:
            wide = sent.pivot(index="contact_key", columns="step_number", values="sent_at")
            wide.columns = [sent_column(int(n)) for n in wide.columns]
            frame = frame.merge(wide, how="left", left_on="contact_key", right_index=True)
        return normalise_sequences(frame, len(campaign.steps))

    def record_sent(self, campaign: Campaign, record: SentRecord) -> None:
        self.prepare(campaign)
        due_at = _utc(record.due_at)
        with self.engine.begin() as conn:
            conn.execute(
                _insert(conn, messages)
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
                    sent_at=_utc(record.sent_at),
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
            if record.completes_sequence:
                conn.execute(
                    sequences.update()
                    .where(
                        sequences.c.campaign == campaign.slug,
                        sequences.c.contact_key == record.contact_key,
                    )
                    .values(completed=True, updated_at=datetime.now(UTC))
                )

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
            "due_at": _utc(record.due_at),
            "reason": record.reason,
            "at": _utc(record.at),
            "attempts": 1,
        }
        with self.engine.begin() as conn:
            stmt = _insert(conn, outcomes).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[outcomes.c.message_id, outcomes.c.status],
                set_={
                    "reason": stmt.excluded.reason,
                    "at": stmt.excluded.at,
                    "attempts": outcomes.c.attempts + 1,
                },
            )
            conn.execute(stmt)

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
        return bool(result.rowcount)

    def read_frame(self, query: Any, times: Iterable[str] = ()) -> pd.DataFrame:
        """A query's rows as a frame, with the named columns as UTC datetimes."""
        self.prepare()
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for name in times:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        return frame

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

    # -- bookings, reminders, email events (in `sql_bookings`) --------------------------------

    def upsert_booking_events(
        self, campaign: Campaign, events: list[BookingEvent]
    ) -> BookingUpsertReport:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.upsert_booking_events(self, campaign, events)

    def load_bookings(self, campaign: Campaign, uids: Iterable[str] | None = None) -> pd.DataFrame:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.load_bookings(self, campaign, uids)

    def load_contact_bookings(self, campaign: Campaign) -> pd.DataFrame:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.load_contact_bookings(self, campaign)

    def load_reminder_log(self, campaign: Campaign) -> pd.DataFrame:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.load_reminder_log(self, campaign)

    def load_contact_flags(self, campaign: Campaign) -> pd.DataFrame:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.load_contact_flags(self, campaign)

    def set_contact_flags(
        self, campaign: Campaign, contact_key: str, email: str = "", **flags: Any
    ) -> None:
        from xmas_pipeline.adapters import sql_bookings

        sql_bookings.set_contact_flags(self, campaign, contact_key, email, **flags)

    def record_delivery_event(self, campaign: Campaign, event: DeliveryEvent) -> bool:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.record_delivery_event(self, campaign, event)

    def delivery_status(self, campaign: Campaign) -> pd.DataFrame:
        from xmas_pipeline.adapters import sql_bookings

        return sql_bookings.delivery_status(self, campaign)

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
