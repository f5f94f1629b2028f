"""Which double opt-in confirmation emails are due now (`core.optin`).

One email per open confirmation, ever: a sequence (or a held change) asked to be confirmed
gets its confirmation email once, straight away; never again once the link has expired
(a new signup after that asks once more). Someone who unsubscribed, bounced or complained
gets none; a paused contact waits.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.due import DUE_COLUMNS, empty_due
from xmas_pipeline.core.exit_rules import EXIT, exit_actions

CONFIRM_KIND = "confirm"
# Extra plan columns of a confirmation row: what it confirms, and until when.
CONFIRM_COLUMNS: tuple[str, ...] = ("confirm_subject", "confirm_expires_at")


def due_confirmations(sequences: pd.DataFrame, campaign: Campaign, now: datetime) -> pd.DataFrame:
    """One row per confirmation email to send now (plan columns plus `CONFIRM_COLUMNS`)."""
    if sequences.empty or "confirm_subject" not in sequences:
        return empty_due()
    subject = sequences["confirm_subject"].fillna("").astype(str)
    if not (subject != "").any():
        return empty_due()  # nothing asked to be confirmed: the usual case, kept cheap
    requested = pd.to_datetime(sequences["confirm_requested_at"], utc=True)
    expires = requested + campaign.confirm_ttl
    awaiting = sequences["awaiting_confirmation"].fillna(False).astype(bool)
    is_signup = subject.str.startswith("signup:")
    wanted = (
        (subject != "")
        & ~sequences["completed"].fillna(False).astype(bool)
        & sequences["confirm_sent_at"].isna()
        & requested.notna()
        & (expires > pd.Timestamp(now))
        # A signup's confirmation only while it waits; a change's only once running.
        & (is_signup == awaiting)
    )
    rows = sequences.loc[wanted]
    if rows.empty:
        return empty_due()
    action, reason = exit_actions(rows, campaign, "nurture", np.zeros(len(rows), dtype="int64"))
    keep = action != EXIT  # stopped for good: no confirmation either, nothing to record
    rows, action, reason = rows.loc[keep], action[keep], reason[keep]
    if rows.empty:
        return empty_due()
    keys = rows["contact_key"].astype(str).tolist()
    subjects = rows["confirm_subject"].astype(str).tolist()
    due_at = pd.to_datetime(rows["confirm_requested_at"], utc=True)
    frame = pd.DataFrame(
        {
            "message_id": [
                message_id(campaign.slug, k, CONFIRM_KIND, s.replace(":", "-"))
                for k, s in zip(keys, subjects, strict=True)
            ],
            "contact_key": keys,
            "email": rows["email"].astype(str).tolist(),
            "kind": CONFIRM_KIND,
            "step_id": CONFIRM_KIND,
            "step_number": np.zeros(len(rows), dtype="int64"),
            "segment": rows["segment"].astype(str).tolist(),
            "due_at": due_at.to_numpy(),
            "due_day": due_at.dt.strftime("%Y-%m-%d").tolist(),
            "action": action,
            "reason": reason,
            "confirm_subject": subjects,
            "confirm_expires_at": (due_at + campaign.confirm_ttl).to_numpy(),
        }
    )
    frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
    frame["confirm_expires_at"] = pd.to_datetime(frame["confirm_expires_at"], utc=True)
    return frame[[*DUE_COLUMNS, *CONFIRM_COLUMNS]].reset_index(drop=True)
