"""A person's exit flags, merged from the two places they are kept.

A flag may be recorded on the sequence row (the person signed up) or on the contact row
(kept whether or not there is a sequence: a booker who never signed up, an unsubscribe from
a reminder, a bounce, a booking made before the assessment). Every send path decides on
the merge of both (`merge_contact_flags`), so whatever arrived first, the booking or the
signup, the unsubscribe or the signup, the person ends in the same state.

- `unsubscribed`, `booked`: either place says so;
- `delivery_state`: the stronger of the two (complained > bounced > "");
- `paused`: the sequence's when there is one (it is the one a marketer edits), else the
  contact's.
"""

from __future__ import annotations

import pandas as pd

from xmas_pipeline.core.email_events import stronger_state

CONTACT_COLUMNS = ["contact_key", "segment", "unsubscribed", "paused", "delivery_state", "booked"]
# The flags the contact row may carry (a missing column means "no").
CONTACT_FLAGS = ("unsubscribed", "paused", "delivery_state", "booked")


def _bools(values: pd.Series) -> pd.Series:
    filled = values.where(values.notna(), False) if values.dtype == object else values.fillna(0)
    return filled.astype(bool)


def merge_contact_flags(
    sequences: pd.DataFrame, extra: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sequences with the contact rows' sticky flags merged in, and one flags row per
    contact (sequence or not) for the reminder rule (`CONTACT_COLUMNS`)."""
    seq = merge_sequence_flags(sequences, extra)
    return seq, contact_rows(seq, extra)


def merge_sequence_flags(sequences: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """The sequences with the contact rows' sticky flags merged in."""
    seq = sequences.copy()
    if extra is not None and not extra.empty and not seq.empty:
        known = extra.drop_duplicates("contact_key", keep="last").set_index("contact_key")
        keys = seq["contact_key"]
        for name in ("unsubscribed", "booked"):
            if name not in known:
                continue
            theirs = _bools(keys.map(known[name])).to_numpy()
            ours = _bools(seq[name]).to_numpy() if name in seq else False
            seq[name] = ours | theirs
        if "delivery_state" in known:
            theirs = keys.map(known["delivery_state"]).fillna("").astype(str)
            mine = seq.get("delivery_state", pd.Series("", index=seq.index)).fillna("")
            seq["delivery_state"] = [
                stronger_state(str(a), str(b)) for a, b in zip(mine, theirs, strict=True)
            ]
    return seq


def contact_rows(seq: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """One flags row per contact, sequence (flags merged: `merge_sequence_flags`) or not,
    for the reminder rule (`CONTACT_COLUMNS`)."""
    parts = [seq.reindex(columns=CONTACT_COLUMNS)] if not seq.empty else []
    if extra is not None and not extra.empty:
        strangers = extra[~extra["contact_key"].isin(set(seq.get("contact_key", [])))]
        parts.append(strangers.assign(segment="").reindex(columns=CONTACT_COLUMNS))
    contacts = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CONTACT_COLUMNS)
    )
    for name in ("unsubscribed", "paused", "booked"):
        contacts[name] = _bools(contacts[name])
    contacts["delivery_state"] = contacts["delivery_state"].fillna("").astype(str)
    return contacts
