"""What the send runs of several campaigns plan from, read together: the sequences with
something that may be due (`sequences.next_due_at`), the people with an active booking,
their flags, bookings and reminder log. A handful of queries whatever the number of
campaigns, each reading rows in proportion to what is due, so planning costs what is due,
not how many people or campaigns there are (`bench/bench_campaigns.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache

import numpy as np
import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.bookings import REMINDER_LOG_COLUMNS
from xmas_pipeline.adapters.sql.engine import utc
from xmas_pipeline.adapters.sql.tables import bookings, messages, outcomes, sequences
from xmas_pipeline.core.booking_state import BOOKING_COLUMNS, empty_bookings, normalise_bookings
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import ELSEWHERE_COLUMNS
from xmas_pipeline.core.send_plan import CampaignState
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column, sequence_columns

# The store's read of contact flags: of these campaigns (by slug) and keys, with `campaign`.
ContactFlags = Callable[[Sequence[str], Iterable[str]], pd.DataFrame]


def _split(frame: pd.DataFrame, slug: str) -> pd.DataFrame:
    if frame.empty:
        return frame.drop(columns="campaign")
    return frame[frame["campaign"] == slug].drop(columns="campaign")


def _splitter(frame: pd.DataFrame) -> Callable[[str], pd.DataFrame]:
    """`_split` of each campaign in turn, the rows of each found once for all."""
    if frame.empty:
        return lambda slug: _split(frame, slug)
    rest = frame.drop(columns="campaign")
    rows = frame.groupby("campaign", sort=False).indices
    nothing = np.zeros(0, dtype="int64")
    return lambda slug: rest.take(rows.get(slug, nothing))


def _reminder_logs(conn: sa.Connection, slugs: list[str]) -> pd.DataFrame:
    sent = pd.read_sql(
        sa.select(
            messages.c.campaign, messages.c.booking_uid, messages.c.step_number, messages.c.due_at
        ).where(messages.c.campaign.in_(slugs), messages.c.kind == "reminder"),
        conn,
    ).assign(status="sent", reason="")
    held = pd.read_sql(
        sa.select(
            outcomes.c.campaign,
            outcomes.c.booking_uid,
            outcomes.c.step_number,
            outcomes.c.status,
            outcomes.c.reason,
            outcomes.c.due_at,
        ).where(outcomes.c.campaign.in_(slugs), outcomes.c.kind == "reminder"),
        conn,
    )
    return pd.concat([sent, held], ignore_index=True) if not held.empty else sent


@cache
def _no_log() -> pd.DataFrame:
    log = pd.DataFrame(columns=REMINDER_LOG_COLUMNS)
    log["due_at"] = pd.to_datetime(log["due_at"], utc=True)
    return log


def _log_of(frame: pd.DataFrame, slug: str) -> pd.DataFrame:
    if frame.empty or not (frame["campaign"] == slug).any():
        return _no_log().copy()  # most campaigns, most of the time: kept cheap
    log = _split(frame, slug).reindex(columns=REMINDER_LOG_COLUMNS)
    log["due_at"] = pd.to_datetime(log["due_at"], utc=True, format="ISO8601")
    return log.reset_index(drop=True)


def _sequences_by_campaign(
    frame: pd.DataFrame, sent: pd.DataFrame, campaigns: Sequence[Campaign]
) -> dict[str, pd.DataFrame]:
    """Each campaign's rows in `core.sequence_frame` shape, normalised once for all (the
    fixed cost of a frame is paid once however many campaigns there are)."""
    if not sent.empty:
        wide = sent.pivot_table(
            index=["campaign", "contact_key"],
            columns="step_number",
            values="sent_at",
            aggfunc="first",
        )
        wide.columns = [sent_column(int(n)) for n in wide.columns]
        frame = frame.merge(wide, how="left", left_on=["campaign", "contact_key"], right_index=True)
    most = max(len(c.steps) for c in campaigns)
    slugs = frame["campaign"].astype(str).to_numpy()
    everything = normalise_sequences(frame, most)
    found = pd.Series(slugs).groupby(slugs, sort=False).indices
    nothing = np.zeros(0, dtype="int64")
    out = {}
    for campaign in campaigns:
        columns = sequence_columns(len(campaign.steps))
        rows = everything.take(found.get(campaign.slug, nothing))
        if columns != list(everything.columns):
            rows = rows[columns]
        out[campaign.slug] = rows.reset_index(drop=True)
    return out


def _last_nurture(conn: sa.Connection, keys: list[str]) -> pd.DataFrame:
    """The last nurture email each of these people got from each campaign (one query)."""
    frame = pd.read_sql(
        sa.select(
            messages.c.contact_key,
            messages.c.campaign,
            sa.func.max(messages.c.sent_at).label("sent_at"),
        )
        .where(messages.c.kind == "nurture", messages.c.contact_key.in_(keys))
        .group_by(messages.c.contact_key, messages.c.campaign),
        conn,
    )
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True, format="ISO8601")
    return frame.reindex(columns=ELSEWHERE_COLUMNS)


def _open_sequences(
    conn: sa.Connection, slugs: list[str], until: datetime, booked_keys: list[str]
) -> pd.DataFrame:
    """The sequences of these campaigns that may have something due by `until`: not
    completed, and `next_due_at` unknown or reached, or a confirmation email owed; and
    every sequence of these people with an active booking. One query of several parts,
    each an index range (an OR of them would read every sequence of the campaigns), the
    rows met twice kept once."""
    running = sa.and_(sequences.c.campaign.in_(slugs), sequences.c.completed == sa.false())
    parts = [
        sa.select(sequences).where(running, sequences.c.next_due_at.is_(None)),
        sa.select(sequences).where(running, sequences.c.next_due_at <= utc(until)),
        # A confirmation email owed (double opt-in: a signup's, or a held change's).
        sa.select(sequences).where(
            running, sequences.c.confirm_subject > "", sequences.c.confirm_sent_at.is_(None)
        ),
    ]
    if booked_keys:
        parts.append(
            sa.select(sequences).where(
                sequences.c.campaign.in_(slugs), sequences.c.contact_key.in_(booked_keys)
            )
        )
    frame = pd.read_sql(sa.union_all(*parts), conn)
    return frame.drop_duplicates(["campaign", "contact_key"]).reset_index(drop=True)


def load_due_states(
    conn: sa.Connection,
    campaigns: Sequence[Campaign],
    until: datetime,
    contact_flags: ContactFlags,
    running: Mapping[str, Campaign] | None = None,
) -> dict[str, CampaignState]:
    """Each campaign's `CampaignState` for a plan made at `until` (or a forecast to it).

    Read: sequences not completed whose `next_due_at` is unknown or reached or that owe a
    confirmation email, and every
    sequence of someone with an active booking (their flags decide the reminders); the
    nurture steps each was sent; the contact flags of all those people (`contact_flags`,
    the store's own read, forgotten addresses included), one read for every campaign;
    bookings and the reminder log of
    the campaigns that send reminders; with `running` (every running campaign by slug),
    each person's last nurture email of every campaign, for the gap across campaigns
    (`core.due`). A sequence left out has nothing due by `until`.
    """
    slugs = [c.slug for c in campaigns]
    reminding = [c.slug for c in campaigns if c.reminders]
    if reminding:
        books = pd.read_sql(
            sa.select(bookings.c.campaign, *(bookings.c[n] for n in BOOKING_COLUMNS)).where(
                bookings.c.campaign.in_(reminding)
            ),
            conn,
        )
        logs = _reminder_logs(conn, reminding)
    else:
        books = pd.DataFrame(columns=["campaign", *BOOKING_COLUMNS])
        logs = pd.DataFrame(columns=["campaign", *REMINDER_LOG_COLUMNS])
    booked_keys = sorted(set(books.loc[books["status"] == "active", "contact_key"].astype(str)))
    frame = _open_sequences(conn, slugs, until, booked_keys)
    sent = pd.DataFrame(columns=["campaign", "contact_key", "step_number", "sent_at"])
    if not frame.empty:
        # The nurture steps sent to these people (in these campaigns: any other row of
        # theirs is left out when the steps are joined to the sequences).
        sent = pd.read_sql(
            sa.select(
                messages.c.campaign,
                messages.c.contact_key,
                messages.c.step_number,
                sa.func.min(messages.c.sent_at).label("sent_at"),
            )
            .where(
                messages.c.campaign.in_(slugs),
                messages.c.kind == "nurture",
                messages.c.contact_key.in_(sorted(set(frame["contact_key"].astype(str)))),
            )
            .group_by(messages.c.campaign, messages.c.contact_key, messages.c.step_number),
            conn,
        )
    by_campaign = _sequences_by_campaign(frame, sent, campaigns)
    keys = set(frame["contact_key"].astype(str)) | set(booked_keys)
    flags = contact_flags(slugs, sorted(keys)) if keys else None
    last = _last_nurture(conn, sorted(keys)) if running is not None and keys else None
    gaps = {slug: other.min_gap for slug, other in running.items()} if running else None
    states: dict[str, CampaignState] = {}
    flags_of = _splitter(flags) if flags is not None else None
    for campaign in campaigns:
        own_books = _split(books, campaign.slug)
        with_reminders = campaign.slug in reminding
        states[campaign.slug] = CampaignState(
            sequences=by_campaign[campaign.slug],
            contact_flags=None if flags_of is None else flags_of(campaign.slug),
            bookings=(
                (normalise_bookings(own_books) if not own_books.empty else empty_bookings())
                if with_reminders
                else None
            ),
            reminder_log=_log_of(logs, campaign.slug) if with_reminders else None,
            elsewhere=None if last is None else last[last["campaign"] != campaign.slug],
            gaps=gaps,
        )
    return states
