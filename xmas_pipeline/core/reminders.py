"""The pre-call reminders due now, from the booking state (`core.booking_state`).

`compute_due_reminders` gives, for each active booking, the reminder due now:

- an offset is due at ``start - before``; once sent for a booking (or for any booking it was
  rescheduled from) it is never sent again;
- a meeting less than ``campaign.min_reminder_lead`` away when booked gets none, and
  offsets already past at booking are skipped;
- when several offsets are due at once (a run catching up), only the latest is sent and the
  earlier ones are skipped as ``superseded``; none is sent once the meeting has started;
- the exit rule (`core.exit_rules`) decides for the one left: unsubscribed, bounced or
  complained contacts get nothing (``exit``); a paused contact is skipped for now (``skip``).

Every row that is not sent carries its reason, so the send path can record it (a skip is
never silent). Rows whose action is ``exit`` are final: recorded once, they settle the
offset. ``skip`` (paused) is not final.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from xmas_pipeline.core.booking_state import BookingState, normalise_bookings
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.due import DUE_COLUMNS
from xmas_pipeline.core.exit_rules import EXIT, exit_actions

# The due frame for reminders: the nurture due columns, then what the email and the
# last-moment check need.
REMINDER_EXTRA_COLUMNS: list[str] = [
    "booking_uid",
    "meeting_start",
    "time_zone",
    "meeting_url",
    "name",
]
REMINDER_DUE_COLUMNS: list[str] = [*DUE_COLUMNS, *REMINDER_EXTRA_COLUMNS]

# Reasons a reminder is never sent. Recorded once, each settles its offset for good.
TOO_CLOSE = "too-close-to-meeting"
PASSED_BEFORE_BOOKING = "passed-before-booking"
MEETING_STARTED = "meeting-started"
SUPERSEDED = "superseded"
FINAL_REASONS: frozenset[str] = frozenset(
    {
        TOO_CLOSE,
        PASSED_BEFORE_BOOKING,
        MEETING_STARTED,
        SUPERSEDED,
        "unsubscribed",
        "bounced",
        "complained",
    }
)

# The send path's reason for a template that cannot render (fixable: retried).
RENDER_FAILURE_PREFIX = "cannot render"

# Found by the last-moment re-read: not sent now, the next run recomputes from the new state.
BOOKING_CANCELLED = "booking-cancelled"
BOOKING_RESCHEDULED = "booking-rescheduled"
BOOKING_MOVED = "booking-moved"
BOOKING_UNKNOWN = "booking-unknown"


def _empty_reminders() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in REMINDER_DUE_COLUMNS})
    frame["step_number"] = frame["step_number"].astype("int64")
    frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
    frame["meeting_start"] = pd.to_datetime(frame["meeting_start"], utc=True)
    return frame


_EMPTY_REMINDERS = _empty_reminders()


def empty_reminders() -> pd.DataFrame:
    return _EMPTY_REMINDERS.copy()


def _ns(moment: datetime | pd.Timestamp) -> int:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return int(stamp.tz_convert("UTC").as_unit("ns").value)


def _chains(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Each booking uid with the uids it was rescheduled from, newest first."""
    previous = dict(zip(frame["booking_uid"], frame["previous_uid"], strict=True))
    chains: dict[str, list[str]] = {}
    for uid in previous:
        chain, seen = [uid], {uid}
        parent = previous.get(uid, "")
        while parent and parent not in seen:
            chain.append(parent)
            seen.add(parent)
            parent = previous.get(parent, "")
        chains[uid] = chain
    return chains


def _settled(
    active: pd.DataFrame,
    chains: Mapping[str, list[str]],
    sent: pd.DataFrame | None,
    campaign: Campaign,
    due_ns: np.ndarray,
) -> np.ndarray:
    """(rows x reminders): True where the offset needs nothing more (sent or settled)."""
    settled = np.zeros(due_ns.shape, dtype=bool)
    if sent is None or sent.empty:
        return settled
    status = sent["status"].fillna("sent") if "status" in sent else pd.Series("sent", sent.index)
    numbers = pd.to_numeric(sent["step_number"], errors="coerce").fillna(0).astype(int)
    uids = sent["booking_uid"].fillna("").astype(str)
    is_sent = (status == "sent").to_numpy()
    sent_pairs = set(zip(uids[is_sent], numbers[is_sent], strict=True))
    skipped: set[tuple[str, int, int]] = set()
    if "due_at" in sent and (~is_sent).any():
        due = pd.to_datetime(sent["due_at"], utc=True, format="ISO8601")
        for uid, number, at in zip(uids[~is_sent], numbers[~is_sent], due[~is_sent], strict=True):
            if not pd.isna(at):
                skipped.add((uid, number, int(at.value // 1_000_000_000)))
    numbers_by_col = [r.number for r in campaign.reminders]
    for i, uid in enumerate(active["booking_uid"]):
        chain = chains.get(uid, [uid])
        for j, number in enumerate(numbers_by_col):
            if (
                any((link, number) in sent_pairs for link in chain)
                or (uid, number, int(due_ns[i, j] // 1_000_000_000)) in skipped
            ):
                settled[i, j] = True
    return settled


def _contact_flags(active: pd.DataFrame, contacts: pd.DataFrame | None) -> pd.DataFrame:
    keys = active[["contact_key"]]
    if contacts is None or contacts.empty:
        flags = keys.copy()
    else:
        known = contacts.drop_duplicates("contact_key", keep="last")
        flags = keys.merge(known, on="contact_key", how="left")
    out = pd.DataFrame({"contact_key": flags["contact_key"].to_numpy()})
    for name in ("unsubscribed", "paused"):
        values = flags[name] if name in flags else pd.Series(False, index=flags.index)
        out[name] = values.fillna(False).astype(bool).to_numpy()
    for name in ("delivery_state", "segment"):
        values = flags[name] if name in flags else pd.Series("", index=flags.index)
        out[name] = values.fillna("").astype(str).to_numpy()
    return out


def compute_due_reminders(
    bookings: pd.DataFrame,
    sent: pd.DataFrame | None,
    campaign: Campaign,
    now: datetime,
    contacts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The reminder rows due now (`REMINDER_DUE_COLUMNS`; see the module docstring).

    `bookings`: the booking-state frame (`BOOKING_COLUMNS`). `sent`: reminder messages
    already dealt with — columns `booking_uid`, `step_number`, optional `status` ("sent" when
    absent) and `due_at`. A "sent" row settles that offset for the booking and every booking
    rescheduled from it; any other row (a final skip) settles only that booking's offset at
    that same due time. `contacts`: optional per-contact `unsubscribed`, `paused`,
    `delivery_state` and `segment` (a booker who never signed up simply has none).
    """
    if not campaign.reminders or bookings.empty:
        return empty_reminders()
    frame = normalise_bookings(bookings)
    mask = (
        (frame["status"] == "active")
        & frame["start"].notna()
        & (frame["contact_key"] != "")
        & (frame["email"] != "")
    )
    active = frame.loc[mask].reset_index(drop=True)
    if active.empty:
        return empty_reminders()

    now_ns = _ns(now)
    start_ns = active["start"].to_numpy(dtype="datetime64[ns]").astype("int64")
    received_ns = active["received_at"].to_numpy(dtype="datetime64[ns]").astype("int64")
    before_ns = np.array(
        [int(r.before.total_seconds() * 1e9) for r in campaign.reminders], dtype="int64"
    )
    due_ns = start_ns[:, None] - before_ns[None, :]
    settled = _settled(active, _chains(frame), sent, campaign, due_ns)
    due = ~settled & (due_ns <= now_ns)
    if not due.any():
        return empty_reminders()

    lead_ns = int(campaign.min_reminder_lead.total_seconds() * 1e9)
    too_close = (start_ns - received_ns) < lead_ns
    passed = due_ns < received_ns[:, None]
    started = now_ns >= start_ns
    live = due & ~passed & ~too_close[:, None] & ~started[:, None]
    latest = np.zeros(due.shape, dtype=bool)
    has_live = live.any(axis=1)
    masked = np.where(live, due_ns, np.iinfo("int64").min)
    latest[np.flatnonzero(has_live), masked.argmax(axis=1)[has_live]] = True

    flags = _contact_flags(active, contacts)
    rule_action, rule_reason = exit_actions(flags, campaign, "reminder")
    ii, jj = np.nonzero(due)
    # First matching reason wins, in this order (the exit rules only for the one to send).
    conditions = [too_close[ii], passed[ii, jj], started[ii], ~latest[ii, jj]]
    reasons = [TOO_CLOSE, PASSED_BEFORE_BOOKING, MEETING_STARTED, SUPERSEDED]
    action = np.where(np.logical_or.reduce(conditions), EXIT, rule_action[ii]).astype(object)
    reason = np.select(conditions, reasons, default=rule_reason[ii]).astype(object)

    keys = active["contact_key"].to_numpy(dtype=object)[ii]
    uids = active["booking_uid"].to_numpy(dtype=object)[ii]
    step_ids = np.array([r.step_id for r in campaign.reminders], dtype=object)[jj]
    numbers = np.array([r.number for r in campaign.reminders], dtype="int64")[jj]
    due_at = pd.to_datetime(due_ns[ii, jj], utc=True)
    out = pd.DataFrame(
        {
            "message_id": [
                message_id(campaign.slug, k, s, u)
                for k, s, u in zip(keys, step_ids, uids, strict=True)
            ],
            "contact_key": keys,
            "email": active["email"].to_numpy(dtype=object)[ii],
            "kind": "reminder",
            "step_id": step_ids,
            "step_number": numbers,
            "segment": flags["segment"].to_numpy(dtype=object)[ii],
            "due_at": due_at,
            "due_day": due_at.strftime("%Y-%m-%d").to_numpy(dtype=object),
            "action": action,
            "reason": reason,
            "booking_uid": uids,
            "meeting_start": active["start"].to_numpy()[ii],
            "time_zone": active["time_zone"].to_numpy(dtype=object)[ii],
            "meeting_url": active["meeting_url"].to_numpy(dtype=object)[ii],
            "name": active["name"].to_numpy(dtype=object)[ii],
        },
        columns=REMINDER_DUE_COLUMNS,
    )
    out["meeting_start"] = pd.to_datetime(out["meeting_start"], utc=True)
    return out.sort_values(["due_at", "message_id"], kind="stable").reset_index(drop=True)


def stale_reason(due_row: Mapping[str, Any], current: BookingState | None) -> str:
    """Why a reminder computed earlier must not go out now ("" when it still may).

    Called with the booking re-read just before sending: a cancellation or a reschedule
    that arrived meanwhile stops the old reminder, and a moved time is never sent stale.
    """
    if current is None:
        return BOOKING_UNKNOWN
    if current.status == "cancelled":
        return BOOKING_CANCELLED
    if current.status == "rescheduled":
        return BOOKING_RESCHEDULED
    planned = pd.Timestamp(due_row["meeting_start"])
    if current.start is None or planned.tzinfo is None or pd.Timestamp(current.start) != planned:
        return BOOKING_MOVED
    return ""


def settled_reminders(log: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows of a reminder log that settle an offset: sent, skipped for a final
    reason, or refused by the provider for good (a paused skip, a stale-booking hold and a
    template that cannot render are reconsidered on the next run)."""
    if log.empty:
        return log
    status = log["status"].fillna("sent") if "status" in log else pd.Series("sent", log.index)
    reason = log["reason"].fillna("") if "reason" in log else pd.Series("", log.index)
    refused = (status == "failed") & ~reason.str.startswith(RENDER_FAILURE_PREFIX)
    keep = (status == "sent") | reason.isin(FINAL_REASONS) | refused
    return log.loc[keep].reset_index(drop=True)
