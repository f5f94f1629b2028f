"""The shape of the campaign state as the pure core sees it: one pandas row per sequence.

Every store (SQL, Notion) returns `load_sequences` in exactly this shape, so the due-email
logic never knows where the state lives.
"""

from __future__ import annotations

import pandas as pd

# Signup fields carried on each sequence row (and into the template context).
SIGNUP_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "business_name",
    "assessment_score",
    "red_systems",
    "orange_systems",
    "yellow_systems",
    "green_systems",
    "gps_score",
    "money_score",
    "weakest_system_1",
    "weakest_system_2",
    "revenue_leak_total",
)

# What a later assessment may refresh (everything but the address, which is the key).
PROFILE_FIELDS: tuple[str, ...] = tuple(f for f in SIGNUP_FIELDS if f != "email")

# The signup fields that hold text; the rest hold whole numbers.
TEXT_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "business_name",
    "weakest_system_1",
    "weakest_system_2",
)
NUMBER_FIELDS: frozenset[str] = frozenset(SIGNUP_FIELDS) - set(TEXT_FIELDS)

# Per-contact flags that exit rules read. `delivery_state` is "", "bounced" or "complained".
FLAG_COLUMNS: tuple[str, ...] = ("booked", "unsubscribed", "paused", "delivery_state")

# Double opt-in (`core.optin`): the sequence waits for its confirmation; the open
# confirmation (a signup's or a held change's), when it was asked for and emailed.
OPTIN_COLUMNS: tuple[str, ...] = (
    "awaiting_confirmation",
    "confirm_subject",
    "confirm_requested_at",
    "confirm_sent_at",
)


def sent_column(step_number: int) -> str:
    return f"email_{step_number}_sent"


def sequence_columns(step_count: int) -> list[str]:
    return [
        "contact_key",
        *SIGNUP_FIELDS,
        "segment",
        "time_zone",  # the reader's, from the signup ("": the campaign's default)
        "signup_at",
        *(sent_column(n) for n in range(1, step_count + 1)),
        "completed",
        "exit_reason",
        *FLAG_COLUMNS,
        *OPTIN_COLUMNS,
    ]


def normalise_sequences(frame: pd.DataFrame, step_count: int) -> pd.DataFrame:
    """Coerce a store's frame to the canonical dtypes (UTC datetimes, bools, ints)."""
    columns = sequence_columns(step_count)
    out = frame.reindex(columns=columns).copy()
    for name in ("signup_at", *(sent_column(n) for n in range(1, step_count + 1))):
        out[name] = pd.to_datetime(out[name], utc=True, format="ISO8601")
    for name in ("confirm_requested_at", "confirm_sent_at"):
        out[name] = pd.to_datetime(out[name], utc=True, format="ISO8601")
    out["confirm_subject"] = out["confirm_subject"].fillna("").astype(str)
    for name in ("completed", "booked", "unsubscribed", "paused", "awaiting_confirmation"):
        out[name] = as_bool(out[name])
    for name in NUMBER_FIELDS:
        out[name] = pd.to_numeric(out[name], errors="coerce").fillna(0).astype("int64")
    for name in TEXT_FIELDS:
        if name != "email":
            out[name] = out[name].fillna("").astype(str)
    out["delivery_state"] = out["delivery_state"].fillna("").astype(str)
    out["time_zone"] = out["time_zone"].fillna("").astype(str)
    out["exit_reason"] = out["exit_reason"].fillna("").astype(str)
    return out.reset_index(drop=True)


def as_bool(column: pd.Series) -> pd.Series:
    """Missing -> False, without pandas' deprecated silent downcasting in `fillna`."""
    filled = column.where(column.notna(), 0) if column.dtype == object else column.fillna(0)
    return column.notna() & filled.astype(bool)
