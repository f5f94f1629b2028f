"""Double opt-in and the retake rule as the ingestion run reports them: the confirmed
signups a CRITICAL alert may name, and the held profile changes shown to the team."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from pydantic import ValidationError

from xmas_pipeline.core.sequence_frame import SIGNUP_FIELDS
from xmas_pipeline.core.signup import Signup, SignupEvent


def confirmed_signups(sequences: pd.DataFrame, day: str) -> list[SignupEvent]:
    """The running (confirmed) sequences of `sequences` as signup events, for the alerts."""
    events: list[SignupEvent] = []
    for row in sequences.to_dict("records"):
        if bool(row.get("awaiting_confirmation")) or bool(row.get("completed")):
            continue
        try:
            signup = Signup.model_validate({f: row[f] for f in SIGNUP_FIELDS})
        except ValidationError:  # a row an older release stored: no alert rather than none
            continue
        received = pd.Timestamp(row["signup_at"]).to_pydatetime()
        events.append(SignupEvent(signup=signup, received_at=received, source=f"confirmed {day}"))
    return events


def held_changes(changes: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    """The profile changes of these contacts, newest last, for the run's metadata."""
    if changes.empty or not keys:
        return []
    rows = changes.loc[changes["contact_key"].isin(keys)]
    return [
        {
            "contact": row["contact_key"],
            "changes": ", ".join(f"{k}: {v}" for k, v in json.loads(str(row["changes"])).items()),
            "status": row["status"],
        }
        for row in rows.to_dict("records")
    ]
