"""The campaign funnel: per segment and step, what was sent and what people did with it.

Plain pandas over three frames the stores already give:

- the sent log (`StateStore.sent_log`): one row per accepted send; a forced re-send is a
  second row for the same `message_id` under another provider id;
- delivery events (Resend webhooks, unsubscribes): columns `EVENT_COLUMNS`; an event names
  its message by `message_id` or by the provider's id (`provider_id`, Resend's `email_id`);
- the sequences frame (`core.state`): segment, `booked` and `unsubscribed` per contact.

Counts are of distinct messages (a re-sent message counts once, and an email opened five
times is one open). People who unsubscribed or booked are counted once each, against the
last email they got before doing it: that is the email that tipped them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from xmas_pipeline.core.segments import ALL_SEGMENTS
from xmas_pipeline.core.sequence_frame import sent_column

EVENT_COLUMNS: list[str] = ["provider_id", "message_id", "contact_key", "kind", "at"]

# Event types that belong to one message (the rest, unsubscribes, belong to a person).
MESSAGE_EVENTS: tuple[str, ...] = ("delivered", "opened", "clicked", "bounced", "complained")
UNSUBSCRIBED = "unsubscribed"

COUNT_COLUMNS: list[str] = ["sent", *MESSAGE_EVENTS, UNSUBSCRIBED, "booked"]
STEP_COLUMNS: list[str] = ["segment", "kind", "step_id", "step_number", *COUNT_COLUMNS]
CONVERSION_COLUMNS: list[str] = ["segment", "contacts", "emailed", "booked", "conversion"]

_KIND_ORDER = {"nurture": 0, "reminder": 1}


@dataclass(frozen=True)
class Funnel:
    steps: pd.DataFrame  # STEP_COLUMNS: one row per segment x step
    conversion: pd.DataFrame  # CONVERSION_COLUMNS: one row per segment

    def totals(self) -> dict[str, int]:
        return {name: int(self.steps[name].sum()) for name in COUNT_COLUMNS}

    def rate(self, numerator: str, denominator: str = "sent") -> float:
        """A ratio of two totals (0.0 when nothing was counted), rounded for display."""
        totals = self.totals()
        return round(totals[numerator] / totals[denominator], 4) if totals[denominator] else 0.0

    def overall_conversion(self) -> float:
        contacts = int(self.conversion["contacts"].sum())
        return round(int(self.conversion["booked"].sum()) / contacts, 4) if contacts else 0.0


def empty_events() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in EVENT_COLUMNS})
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def normalise_events(events: pd.DataFrame | None) -> pd.DataFrame:
    """Canonical event columns; kinds without Resend's `email.` prefix, lower case."""
    if events is None or events.empty:
        return empty_events()
    out = events.reindex(columns=EVENT_COLUMNS).copy()
    for name in ("provider_id", "message_id", "contact_key", "kind"):
        out[name] = out[name].fillna("").astype(str)
    out["kind"] = out["kind"].str.lower().str.removeprefix("email.")
    out["contact_key"] = out["contact_key"].str.lower()
    out["at"] = pd.to_datetime(out["at"], utc=True, format="ISO8601")
    return out.reset_index(drop=True)


# What a message's best-known status says happened to it: a click means it was delivered
# and opened (tracking pixels miss opens; a click cannot happen unopened), a complaint
# means it arrived.
_IMPLIED: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "opened": ("delivered", "opened"),
    "clicked": ("delivered", "opened", "clicked"),
    "complained": ("delivered", "complained"),
    "bounced": ("bounced",),
}


def events_from_status(status: pd.DataFrame) -> pd.DataFrame:
    """Per-message delivery statuses (columns `provider_id`, `message_id`, `contact_key`,
    `status`, `status_at`: the highest-ranked event each message had) as the events they
    imply, in `EVENT_COLUMNS` shape."""
    if status.empty:
        return empty_events()
    rows = [
        {
            "provider_id": row["provider_id"],
            "message_id": row["message_id"],
            "contact_key": row["contact_key"],
            "kind": kind,
            "at": row["status_at"],
        }
        for row in status.to_dict("records")
        for kind in _IMPLIED.get(str(row["status"]), ())
    ]
    return normalise_events(pd.DataFrame(rows, columns=EVENT_COLUMNS))


def compute_funnel(
    sent_log: pd.DataFrame, events: pd.DataFrame | None, sequences: pd.DataFrame
) -> Funnel:
    messages = _messages(sent_log, sequences)
    events = _resolve(normalise_events(events), sent_log)
    for kind in MESSAGE_EVENTS:
        hit = set(events.loc[events["kind"] == kind, "message_id"])
        messages[kind] = messages["message_id"].isin(hit).astype("int64")
    messages[UNSUBSCRIBED] = _attribute(messages, _unsubscribe_times(events, sequences))
    booked = sequences.loc[sequences["booked"].astype(bool), "contact_key"]
    nurture = messages[messages["kind"] == "nurture"]
    messages["booked"] = _attribute(nurture, _no_time(booked.astype(str)))
    messages["booked"] = messages["booked"].fillna(0).astype("int64")
    return Funnel(steps=_step_table(messages), conversion=_conversion(messages, sequences))


def _messages(sent_log: pd.DataFrame, sequences: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct message (its first send), with its segment."""
    columns = ["message_id", "contact_key", "kind", "step_id", "step_number", "segment", "sent_at"]
    if sent_log.empty:
        frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
        frame["sent"] = pd.Series(dtype="int64")
        return frame
    log = sent_log.reindex(columns=columns).copy()
    log["sent_at"] = pd.to_datetime(log["sent_at"], utc=True, format="ISO8601")
    log = log.sort_values(["sent_at", "message_id"]).drop_duplicates("message_id")
    # Records written before a segment was kept on the message take the contact's.
    by_contact = sequences.set_index("contact_key")["segment"]
    missing = log["segment"].fillna("").astype(str) == ""
    log.loc[missing, "segment"] = log.loc[missing, "contact_key"].map(by_contact)
    log["segment"] = log["segment"].fillna("").astype(str)
    log["step_number"] = log["step_number"].astype("int64")
    log["sent"] = 1
    return log.reset_index(drop=True)


def _resolve(events: pd.DataFrame, sent_log: pd.DataFrame) -> pd.DataFrame:
    """Give every event its message id (through the provider id) and contact."""
    if events.empty or sent_log.empty:
        return events
    known = sent_log[sent_log["provider_id"].fillna("").astype(str) != ""]
    by_provider = known.drop_duplicates("provider_id").set_index("provider_id")
    unresolved = events["message_id"] == ""
    events.loc[unresolved, "message_id"] = (
        events.loc[unresolved, "provider_id"].map(by_provider["message_id"]).fillna("")
    )
    contacts = sent_log.drop_duplicates("message_id").set_index("message_id")["contact_key"]
    no_contact = events["contact_key"] == ""
    events.loc[no_contact, "contact_key"] = (
        events.loc[no_contact, "message_id"].map(contacts).fillna("")
    )
    return events


def _unsubscribe_times(events: pd.DataFrame, sequences: pd.DataFrame) -> pd.Series:
    """contact_key -> when they unsubscribed (NaT: known only from the contact's flag)."""
    stated = events[(events["kind"] == UNSUBSCRIBED) & (events["contact_key"] != "")]
    first = stated.groupby("contact_key")["at"].min()
    flagged = sequences.loc[sequences["unsubscribed"].astype(bool), "contact_key"].astype(str)
    extra = _no_time(flagged[~flagged.isin(first.index)])
    return pd.concat([first, extra]) if len(extra) else first


def _no_time(contacts: pd.Series) -> pd.Series:
    """contact_key -> NaT: people we know did something, but not when."""
    return pd.Series(pd.NaT, index=contacts.to_numpy(), dtype="datetime64[ns, UTC]")


def _attribute(messages: pd.DataFrame, when: pd.Series) -> pd.Series:
    """1 on the last message each contact in `when` got at or before that moment."""
    result = pd.Series(0, index=messages.index, dtype="int64")
    if messages.empty or when.empty:
        return result
    frame = messages[messages["contact_key"].isin(when.index)]
    cutoff = frame["contact_key"].map(when)
    frame = frame[cutoff.isna() | (frame["sent_at"] <= cutoff)]
    if frame.empty:
        return result
    last = frame.sort_values("sent_at").groupby("contact_key").tail(1).index
    result.loc[last] = 1
    return result


def _step_table(messages: pd.DataFrame) -> pd.DataFrame:
    steps = messages[["kind", "step_id", "step_number"]].drop_duplicates()
    steps = steps.assign(order=steps["kind"].map(_KIND_ORDER).fillna(9))
    steps = steps.sort_values(["order", "step_number"]).drop(columns="order")
    segments = pd.DataFrame({"segment": [s.value for s in ALL_SEGMENTS]})
    grid = segments.merge(steps, how="cross")
    sums = messages.groupby(["segment", "step_id"], as_index=False)[COUNT_COLUMNS].sum()
    table = grid.merge(sums, on=["segment", "step_id"], how="left")
    table[COUNT_COLUMNS] = table[COUNT_COLUMNS].fillna(0).astype("int64")
    table["step_number"] = table["step_number"].astype("int64")
    return table[STEP_COLUMNS].reset_index(drop=True)


def _conversion(messages: pd.DataFrame, sequences: pd.DataFrame) -> pd.DataFrame:
    rows = []
    emailed = set(messages["contact_key"])
    for segment in ALL_SEGMENTS:
        people = sequences[sequences["segment"] == segment.value]
        contacts = len(people)
        booked = int(people["booked"].astype(bool).sum())
        rows.append(
            {
                "segment": segment.value,
                "contacts": contacts,
                "emailed": int(people["contact_key"].isin(emailed).sum()),
                "booked": booked,
                "conversion": round(booked / contacts, 4) if contacts else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=CONVERSION_COLUMNS)


def steps_reached(sequences: pd.DataFrame, step_count: int) -> pd.DataFrame:
    """Sequences by the last nurture step sent, per segment: one row per segment, columns
    `not emailed`, `email-1` ... `email-<step_count>`, then `completed` (of those, how many
    have finished or left the sequence) and `total`."""
    columns = ["not emailed", *(f"email-{n}" for n in range(1, step_count + 1))]
    sent = sequences[[sent_column(n) for n in range(1, step_count + 1)]].notna().to_numpy()
    # The highest step sent (a forced early send may leave gaps below it); 0: none yet.
    last = np.where(sent.any(axis=1), step_count - np.argmax(sent[:, ::-1], axis=1), 0)
    frame = pd.DataFrame(
        {
            "segment": sequences["segment"].to_numpy(dtype=object),
            "reached": np.asarray(columns, dtype=object)[last],
            "completed": sequences["completed"].to_numpy(dtype="int64"),
        }
    )
    segments = [s.value for s in ALL_SEGMENTS]
    table = (
        frame.groupby(["segment", "reached"]).size().unstack(fill_value=0)
        if len(frame)
        else pd.DataFrame()
    )
    table = table.reindex(index=segments, columns=columns, fill_value=0).astype("int64")
    table["completed"] = frame.groupby("segment")["completed"].sum().reindex(segments, fill_value=0)
    table["total"] = table[columns].sum(axis=1)
    return table.rename_axis(index="segment", columns=None).reset_index()
