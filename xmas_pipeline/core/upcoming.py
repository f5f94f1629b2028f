"""What will fall due in the coming days: nurture emails and reminders, per UTC day and step.

A forecast for people, not a plan: `core.due` and `core.reminders` decide what a send run
sends; this only counts what the state as it is now says is coming.

- a nurture step is coming when its sequence is active (not completed), the step is unsent
  and `signup_at + delay` lies in the window [now, now + days);
- a reminder is coming when its booking is active, with a contact and an address, and
  `start - before` lies in the window. A booking made less than `min_reminder_lead` before
  its meeting gets none, and an offset already sent for the booking (or for one it was
  rescheduled from, or under its earlier time) is not sent again, as in `core.reminders`;
- each message is counted on the UTC day it falls due, the day `deliveries` files it under.
  The send window and `min_gap` may hold a nurture email for some hours after that, and one
  overdue now is not counted here (`due_emails` counts it as `due`).

The exit rule (`core.exit_rules`) is applied: a contact who unsubscribed, bounced or
complained gets nothing, a booked one no more nurture, and a paused one nothing until
someone unpauses them. Those outcomes are known now and would otherwise inflate the
forecast with emails that will not go out (a booked contact's sequence stays active until
its next step exits it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from xmas_pipeline.core.booking_state import normalise_bookings
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import step_due_times
from xmas_pipeline.core.exit_rules import SEND, exit_actions
from xmas_pipeline.core.flags import merge_contact_flags
from xmas_pipeline.core.send_plan import CampaignState
from xmas_pipeline.core.sequence_frame import sent_column

DEFAULT_DAYS = 7
UPCOMING_COLUMNS: list[str] = ["contact_key", "kind", "step_id", "due_at", "due_day"]
TOTAL = "total"


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in UPCOMING_COLUMNS})
    frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
    return frame


def _ns(moment: datetime) -> int:
    return int(pd.Timestamp(moment).tz_convert("UTC").as_unit("ns").value)


def _rows(keys: np.ndarray, kind: str, step_ids: np.ndarray, due_ns: np.ndarray) -> pd.DataFrame:
    due_at = pd.to_datetime(due_ns, utc=True)
    return pd.DataFrame(
        {
            "contact_key": keys.astype(object),
            "kind": kind,
            "step_id": step_ids.astype(object),
            "due_at": due_at,
            "due_day": due_at.strftime("%Y-%m-%d").to_numpy(dtype=object),
        },
        columns=UPCOMING_COLUMNS,
    )


def _nurture(sequences: pd.DataFrame, campaign: Campaign, lo: int, hi: int) -> pd.DataFrame:
    if sequences.empty:
        return _empty()
    waiting = sequences.get("awaiting_confirmation", pd.Series(False, index=sequences.index))
    stopped = sequences["completed"].to_numpy(dtype=bool) | waiting.to_numpy(dtype=bool)
    active = sequences.loc[~stopped]  # awaiting a double opt-in confirmation: nothing yet
    action, _ = exit_actions(active, campaign, "nurture")
    active = active.loc[action == SEND]
    if active.empty:
        return _empty()
    due_ns = step_due_times(active, campaign)
    unsent = np.column_stack(
        [active[sent_column(s.number)].isna().to_numpy() for s in campaign.steps]
    )
    ii, jj = np.nonzero(unsent & (due_ns >= lo) & (due_ns < hi))
    step_ids = np.array([s.step_id for s in campaign.steps], dtype=object)
    keys = active["contact_key"].astype(str).to_numpy(dtype=object)
    return _rows(keys[ii], "nurture", step_ids[jj], due_ns[ii, jj])


def _sent_before(bookings: pd.DataFrame, reminder_log: pd.DataFrame | None) -> set[tuple[str, int]]:
    """(booking uid, reminder number) already sent for that booking or any booking it was
    rescheduled from. Only sends matter ahead of time: every other outcome is recorded
    when its reminder falls due, so it lies in the past."""
    if reminder_log is None or reminder_log.empty:
        return set()
    log = reminder_log
    status = log["status"].fillna("sent") if "status" in log else pd.Series("sent", log.index)
    sent = log.loc[status == "sent"]
    numbers = pd.to_numeric(sent["step_number"], errors="coerce").fillna(0).astype(int)
    by_uid: dict[str, set[int]] = {}
    for uid, number in zip(sent["booking_uid"].fillna("").astype(str), numbers, strict=True):
        by_uid.setdefault(uid, set()).add(int(number))
    previous = dict(zip(bookings["booking_uid"], bookings["previous_uid"], strict=True))
    done: set[tuple[str, int]] = set()
    for uid in previous:
        link, seen = uid, set()
        while link and link not in seen:  # a malformed chain must not loop forever
            seen.add(link)
            done.update((uid, n) for n in by_uid.get(link, ()))
            link = previous.get(link, "")
    return done


def _reminders(
    bookings: pd.DataFrame | None,
    contacts: pd.DataFrame,
    reminder_log: pd.DataFrame | None,
    campaign: Campaign,
    lo: int,
    hi: int,
) -> pd.DataFrame:
    if bookings is None or bookings.empty or not campaign.reminders:
        return _empty()
    frame = normalise_bookings(bookings)
    mask = (
        (frame["status"] == "active")
        & frame["start"].notna()
        & (frame["contact_key"] != "")
        & (frame["email"] != "")
    )
    active = frame.loc[mask].reset_index(drop=True)
    if active.empty:
        return _empty()
    flags = active[["contact_key"]].merge(
        contacts.drop_duplicates("contact_key", keep="last"), on="contact_key", how="left"
    )
    action, _ = exit_actions(flags, campaign, "reminder")
    start_ns = active["start"].to_numpy(dtype="datetime64[ns]").astype("int64")
    received_ns = active["received_at"].to_numpy(dtype="datetime64[ns]").astype("int64")
    lead_ns = int(campaign.min_reminder_lead.total_seconds() * 1e9)
    live = (action == SEND) & ((start_ns - received_ns) >= lead_ns)
    before_ns = np.array(
        [int(r.before.total_seconds() * 1e9) for r in campaign.reminders], dtype="int64"
    )
    due_ns = start_ns[:, None] - before_ns[None, :]
    done = _sent_before(frame, reminder_log)
    uids = active["booking_uid"].to_numpy(dtype=object)
    settled = np.array(
        [[(uid, r.number) in done for r in campaign.reminders] for uid in uids], dtype=bool
    ).reshape(due_ns.shape)
    coming = live[:, None] & ~settled & (due_ns >= received_ns[:, None])
    ii, jj = np.nonzero(coming & (due_ns >= lo) & (due_ns < hi))
    step_ids = np.array([r.step_id for r in campaign.reminders], dtype=object)
    keys = active["contact_key"].to_numpy(dtype=object)
    return _rows(keys[ii], "reminder", step_ids[jj], due_ns[ii, jj])


def upcoming_messages(
    sequences: pd.DataFrame,
    campaign: Campaign,
    now: datetime,
    bookings: pd.DataFrame | None = None,
    *,
    contacts: pd.DataFrame | None = None,
    reminder_log: pd.DataFrame | None = None,
    days: int = DEFAULT_DAYS,
) -> pd.DataFrame:
    """Every message coming in [now, now + days) (`UPCOMING_COLUMNS`; see the module
    docstring), sorted by due time.

    `sequences`: the sequences frame (`core.sequence_frame`), exit flags included.
    `bookings`: the booking state (`BOOKING_COLUMNS`), for reminders. `contacts`: per-contact
    `unsubscribed`, `paused`, `delivery_state` for the reminders' exit rule (default: the
    sequences' own flags). `reminder_log`: reminders already dealt with (`booking_uid`,
    `step_number`, `status`).
    """
    lo = _ns(now)
    hi = _ns(now + timedelta(days=days))
    if contacts is None:
        names = ["contact_key", "unsubscribed", "paused", "delivery_state"]
        contacts = sequences.reindex(columns=names)
    parts = [
        _nurture(sequences, campaign, lo, hi),
        _reminders(bookings, contacts, reminder_log, campaign, lo, hi),
    ]
    found = [p for p in parts if not p.empty]
    if not found:
        return _empty()
    out = pd.concat(found, ignore_index=True)
    out = out.sort_values(["due_at", "step_id", "contact_key"], kind="stable")
    return out.reset_index(drop=True)


def upcoming_by_day(
    messages: pd.DataFrame, campaign: Campaign, now: datetime, days: int = DEFAULT_DAYS
) -> pd.DataFrame:
    """`upcoming_messages` counted per UTC day (rows) and step (columns).

    One row per UTC day the window touches, empty days included (so a quiet day shows as
    0, not as a gap), then a `total` row. Columns: `day` ("2025-12-01 Mon"), every step of
    the campaign in order (nurture, then reminders), then `total`.
    """
    steps = [s.step_id for s in campaign.steps] + [r.step_id for r in campaign.reminders]
    first = pd.Timestamp(now).tz_convert("UTC").normalize()
    last = (pd.Timestamp(now + timedelta(days=days)) - pd.Timedelta(1, "ns")).tz_convert("UTC")
    dates = pd.date_range(first, last.normalize(), freq="D")
    grid = (
        messages.groupby(["due_day", "step_id"]).size().unstack(fill_value=0)
        if len(messages)
        else pd.DataFrame()
    )
    iso_days = dates.strftime("%Y-%m-%d")
    grid = grid.reindex(index=iso_days, columns=steps, fill_value=0).astype("int64")
    grid[TOTAL] = grid[steps].sum(axis=1)
    # English day names whatever the process locale (strftime's %a follows it).
    grid.index = iso_days + " " + dates.day_name().str[:3]
    grid.loc[TOTAL] = grid.sum(axis=0)
    return grid.rename_axis(index="day", columns=None).reset_index()


def upcoming_from_state(
    state: CampaignState, campaign: Campaign, now: datetime, days: int = DEFAULT_DAYS
) -> pd.DataFrame:
    """The per-day table (`upcoming_by_day`) from the state a send plan is made from,
    with every exit flag merged in as `core.send_plan` does."""
    sequences, contacts = merge_contact_flags(state.sequences, state.contact_flags)
    messages = upcoming_messages(
        sequences,
        campaign,
        now,
        state.bookings,
        contacts=contacts,
        reminder_log=state.reminder_log,
        days=days,
    )
    return upcoming_by_day(messages, campaign, now, days)
