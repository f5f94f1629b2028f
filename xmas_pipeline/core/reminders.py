"""Booking state and the pre-call reminders due now.

Booking state is a fold of `BookingEvent`s into one row per booking uid:

- ``active``: a meeting that will happen, at ``start``;
- ``cancelled``: cancelled (or rejected) — terminal, no event brings it back;
- ``rescheduled``: replaced by another booking (``rescheduled_to``); the replacement carries
  ``previous_uid``, so reminders already sent for the old booking are not sent again.

``received_at`` is when the booking got its current start time (Cal.com's own time of the
change); reminder offsets already in the past at that moment are never sent. The fold is
idempotent: the same webhook delivered twice, or an API item polled twice, changes nothing,
and news older than what a booking already shows never rolls it back.

`compute_due_reminders` then gives, for each active booking, the reminder due now:

- an offset is due at ``start - before``; once sent for a booking (or for any booking it was
  rescheduled from) it is never sent again;
- a meeting less than ``campaign.min_reminder_lead`` away when booked gets none, and
  offsets already past at booking are skipped;
- when several offsets are due at once (a run catching up), only the latest is sent and the
  earlier ones are skipped as ``superseded``; none is sent once the meeting has started;
- exit rules: unsubscribed, bounced or complained contacts get nothing (``exit``); a paused
  contact is skipped for now (``skip``) and reconsidered on every run.

Every row that is not sent carries its reason, so the delivery step can record it (a skip is
never silent). Rows whose action is ``exit`` are final: recorded once, they settle the
offset. ``skip`` (paused) is not final.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.due import DUE_COLUMNS, EXIT, SEND, SKIP
from xmas_pipeline.core.email_events import stronger_state

BookingStatus = Literal["active", "cancelled", "rescheduled"]

BOOKING_COLUMNS: list[str] = [
    "booking_uid",
    "contact_key",
    "email",
    "name",
    "time_zone",
    "start",
    "end",
    "meeting_url",
    "status",
    "previous_uid",
    "rescheduled_to",
    "received_at",
    "updated_at",
]
_TIME_COLUMNS = ("start", "end", "received_at", "updated_at")

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

# The delivery step's reason for a template that cannot render (fixable: retried).
RENDER_FAILURE_PREFIX = "cannot render"

# Found by the last-moment re-read: not sent now, the next run recomputes from the new state.
BOOKING_CANCELLED = "booking-cancelled"
BOOKING_RESCHEDULED = "booking-rescheduled"
BOOKING_MOVED = "booking-moved"
BOOKING_UNKNOWN = "booking-unknown"

_KIND_ORDER = {"created": 0, "rescheduled": 1, "cancelled": 2}


class BookingState(BaseModel):
    """One booking as the pipeline knows it now."""

    model_config = ConfigDict(frozen=True)

    booking_uid: str
    contact_key: str = ""
    email: str = ""
    name: str = ""
    time_zone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    meeting_url: str = ""
    status: BookingStatus = "active"
    previous_uid: str = ""
    rescheduled_to: str = ""
    received_at: datetime
    updated_at: datetime

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else ""


# -- the fold -------------------------------------------------------------------------------


def fold_booking_events(
    events: Iterable[BookingEvent], existing: Mapping[str, BookingState] | None = None
) -> dict[str, BookingState]:
    """Apply events (in Cal.com's order of change) to the known bookings; a new dict."""
    state: dict[str, BookingState] = dict(existing or {})
    unique = {event.dedupe_key: event for event in events}.values()
    for event in sorted(unique, key=lambda e: (e.event_at, _KIND_ORDER[e.kind], e.uid)):
        if event.kind == "cancelled":
            _cancel(state, event)
            continue
        _activate(state, event)
        if event.kind == "rescheduled" and event.previous_uid and event.previous_uid != event.uid:
            _retire(state, event)
    return state


def _details(event: BookingEvent) -> dict[str, Any]:
    """The booking details an event states (blank values state nothing)."""
    found: dict[str, Any] = {
        "contact_key": event.contact_key,
        "email": event.email,
        "name": event.name,
        "meeting_url": event.meeting_url,
        "start": event.start,
        "end": event.end,
    }
    if event.email:  # the time zone comes with the attendee
        found["time_zone"] = event.time_zone
    return {key: value for key, value in found.items() if value not in ("", None)}


def _fill_blanks(current: BookingState, event: BookingEvent) -> BookingState:
    missing = {
        key: value
        for key, value in _details(event).items()
        if getattr(current, key) in ("", None) or (key == "time_zone" and not current.email)
    }
    return current.model_copy(update=missing) if missing else current


def _activate(state: dict[str, BookingState], event: BookingEvent) -> None:
    current = state.get(event.uid)
    previous = event.previous_uid if event.previous_uid != event.uid else ""
    if current is None:
        state[event.uid] = BookingState(
            booking_uid=event.uid,
            status="active",
            previous_uid=previous,
            received_at=event.booked_at or event.event_at,
            updated_at=event.event_at,
            **_details(event),
        )
        return
    if current.status != "active" or event.event_at < current.updated_at:
        # Terminal, or older news (an overlapping re-poll, an out-of-order delivery).
        state[event.uid] = _fill_blanks(current, event)
        return
    update = _details(event)
    update["updated_at"] = event.event_at
    if not current.previous_uid and previous:
        update["previous_uid"] = previous
    if event.start is not None and event.start != current.start:
        update["received_at"] = event.event_at  # the new time arrives now
    state[event.uid] = current.model_copy(update=update)


def _retire(state: dict[str, BookingState], event: BookingEvent) -> None:
    """The booking a reschedule replaced stops being a meeting."""
    old_uid = event.previous_uid
    current = state.get(old_uid)
    if current is None:
        state[old_uid] = BookingState(
            booking_uid=old_uid,
            contact_key=event.contact_key,
            email=event.email,
            name=event.name,
            time_zone=event.time_zone,
            start=event.previous_start,
            meeting_url=event.meeting_url,
            status="rescheduled",
            rescheduled_to=event.uid,
            received_at=event.event_at,
            updated_at=event.event_at,
        )
    elif current.status != "rescheduled":
        state[old_uid] = current.model_copy(
            update={
                "status": "rescheduled",
                "rescheduled_to": event.uid,
                "updated_at": max(current.updated_at, event.event_at),
            }
        )


def _cancel(state: dict[str, BookingState], event: BookingEvent) -> None:
    status: BookingStatus = "rescheduled" if event.rescheduled_to else "cancelled"
    current = state.get(event.uid)
    if current is None:
        state[event.uid] = BookingState(
            booking_uid=event.uid,
            status=status,
            rescheduled_to=event.rescheduled_to,
            received_at=event.event_at,
            updated_at=event.event_at,
            **_details(event),
        )
        return
    current = _fill_blanks(current, event)
    if current.status == "active" or (current.status == "cancelled" and status == "rescheduled"):
        current = current.model_copy(
            update={
                "status": status,
                "rescheduled_to": event.rescheduled_to or current.rescheduled_to,
                "updated_at": max(current.updated_at, event.event_at),
            }
        )
    state[event.uid] = current


# -- frames ---------------------------------------------------------------------------------


def empty_bookings() -> pd.DataFrame:
    return normalise_bookings(pd.DataFrame(columns=BOOKING_COLUMNS))


def _is_normal(frame: pd.DataFrame) -> bool:
    """Already canonical (what `bookings_frame` returns): skip the copy on the hot path."""
    if list(frame.columns) != BOOKING_COLUMNS or not frame.index.equals(pd.RangeIndex(len(frame))):
        return False
    for name in BOOKING_COLUMNS:
        dtype = frame[name].dtype
        if name in _TIME_COLUMNS:
            if not isinstance(dtype, pd.DatetimeTZDtype) or str(dtype.tz) != "UTC":
                return False
        elif not pd.api.types.is_string_dtype(dtype) or frame[name].isna().any():
            return False
    return True


def normalise_bookings(frame: pd.DataFrame) -> pd.DataFrame:
    """A store's bookings frame in canonical dtypes (UTC datetimes, strings)."""
    if _is_normal(frame):
        return frame
    out = frame.reindex(columns=BOOKING_COLUMNS).copy()
    for name in _TIME_COLUMNS:
        out[name] = pd.to_datetime(out[name], utc=True, format="ISO8601")
    for name in BOOKING_COLUMNS:
        if name not in _TIME_COLUMNS:
            out[name] = out[name].fillna("").astype(str)
    out.loc[out["time_zone"] == "", "time_zone"] = "UTC"
    return out.reset_index(drop=True)


def bookings_frame(states: Mapping[str, BookingState] | Iterable[BookingState]) -> pd.DataFrame:
    items = states.values() if isinstance(states, Mapping) else states
    rows = [state.model_dump() for state in items]
    if not rows:
        return empty_bookings()
    return normalise_bookings(pd.DataFrame(rows))


def bookings_from_frame(frame: pd.DataFrame) -> dict[str, BookingState]:
    states: dict[str, BookingState] = {}
    for row in normalise_bookings(frame).to_dict("records"):
        values = {
            key: (None if key in _TIME_COLUMNS and pd.isna(value) else value)
            for key, value in row.items()
        }
        for key in _TIME_COLUMNS:
            if values[key] is not None:
                values[key] = values[key].to_pydatetime()
        states[values["booking_uid"]] = BookingState(**values)
    return states


# -- contact updates ------------------------------------------------------------------------

BOOKED, NOT_BOOKED, PRE_CALL_PREP = "Booked", "Not Booked", "Pre-Call Prep"


@dataclass(frozen=True)
class ContactBookingUpdate:
    """What a contact's CRM record should say after its bookings changed."""

    contact_key: str
    email: str
    name: str
    booking_status: str  # "Booked" | "Not Booked"
    call_date: datetime | None  # the active booking's start; None when not booked
    booking_uid: str
    campaign_status: str  # "Pre-Call Prep" when booked; "" leaves it as it is

    @property
    def booked(self) -> bool:
        return self.booking_status == BOOKED


def contact_booking_updates(
    states: Mapping[str, BookingState], contact_keys: Iterable[str]
) -> list[ContactBookingUpdate]:
    """For each contact: Booked (with the latest active booking) or Not Booked (cancelled)."""
    by_contact: dict[str, list[BookingState]] = {}
    for state in states.values():
        by_contact.setdefault(state.contact_key, []).append(state)
    updates: list[ContactBookingUpdate] = []
    for key in sorted({k for k in contact_keys if k}):
        bookings = by_contact.get(key, [])
        active = [b for b in bookings if b.status == "active" and b.start is not None]
        if active:
            best = max(active, key=lambda b: (b.updated_at, b.start))
            updates.append(
                ContactBookingUpdate(
                    key, best.email, best.name, BOOKED, best.start, best.booking_uid, PRE_CALL_PREP
                )
            )
            continue
        cancelled = [b for b in bookings if b.status == "cancelled"]
        if cancelled:
            last = max(cancelled, key=lambda b: b.updated_at)
            updates.append(
                ContactBookingUpdate(
                    key, last.email, last.name, NOT_BOOKED, None, last.booking_uid, ""
                )
            )
    return updates


# -- due reminders --------------------------------------------------------------------------


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


def _exit_rules(flags: pd.DataFrame, campaign: Campaign) -> tuple[np.ndarray, np.ndarray]:
    """Per booking: what the exit rules say for a reminder due now (first match wins)."""
    stop_all = set(campaign.exit.stop_all_on)
    state = flags["delivery_state"].to_numpy(dtype=object)
    conditions: list[np.ndarray] = []
    actions: list[str] = []
    reasons: list[str] = []
    if "unsubscribed" in stop_all:
        conditions.append(flags["unsubscribed"].to_numpy(dtype=bool))
        actions.append(EXIT)
        reasons.append("unsubscribed")
    for delivery in ("bounced", "complained"):
        if delivery in stop_all:
            conditions.append(state == delivery)
            actions.append(EXIT)
            reasons.append(delivery)
    conditions.append(flags["paused"].to_numpy(dtype=bool))
    actions.append(SKIP)
    reasons.append("paused")
    action = np.select(conditions, actions, default=SEND).astype(object)
    reason = np.select(conditions, reasons, default="").astype(object)
    return action, reason


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
    rule_action, rule_reason = _exit_rules(flags, campaign)
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


def merge_contact_flags(
    sequences: pd.DataFrame, extra: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exit flags from both places they live: the sequences, and contact-level flags (the
    only ones a booker without a sequence has).

    Returns the sequences with the sticky flags (unsubscribed, bounced, complained) of
    `extra` added, and the per-contact flags `compute_due_reminders` reads (a sequence's
    `paused` is the one a marketer edits, so it wins for contacts that have one).
    """
    columns = ["contact_key", "segment", "unsubscribed", "paused", "delivery_state"]
    seq = sequences.copy()
    if extra is not None and not extra.empty and not seq.empty:
        known = extra.drop_duplicates("contact_key", keep="last").set_index("contact_key")
        keys = seq["contact_key"]
        unsub = keys.map(known["unsubscribed"]).fillna(False).astype(bool)
        seq["unsubscribed"] = seq["unsubscribed"].astype(bool) | unsub.to_numpy()
        other = keys.map(known["delivery_state"]).fillna("").astype(str).to_numpy()
        seq["delivery_state"] = [
            stronger_state(str(a), str(b))
            for a, b in zip(seq["delivery_state"].fillna(""), other, strict=True)
        ]
    parts = [seq.reindex(columns=columns)] if not seq.empty else []
    if extra is not None and not extra.empty:
        strangers = extra[~extra["contact_key"].isin(set(seq.get("contact_key", [])))]
        parts.append(strangers.assign(segment="").reindex(columns=columns))
    contacts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return seq, contacts


def reminder_contact_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The contact fields a reminder's template context starts from: the signup's when
    the booker signed up (merged onto the row), else the name Cal.com gave."""
    fields = {
        key: value
        for key, value in row.items()
        if not (isinstance(value, float) and np.isnan(value)) and value is not None
    }
    if not str(fields.get("first_name") or "").strip():
        name = str(row.get("name") or "").strip()
        fields["first_name"] = name.split()[0] if name else ""
    return fields
