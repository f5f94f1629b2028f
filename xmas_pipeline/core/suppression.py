"""One suppression list for every campaign: what stops a person in one stops them in all.

A person may be in several campaigns at once (one sequence per campaign, contact rows per
campaign). What they told us, or what their mailbox told us, is about the address, not
about a campaign, so a campaign's flags are merged with what any campaign recorded for
the same contact key (`merge_across_campaigns`):

- `unsubscribed`: an unsubscribe recorded anywhere (a sequence row, a contact row, an
  unsubscribe event) holds everywhere;
- `delivery_state`: the strongest anywhere (a hard bounce or a complaint; a soft bounce
  is not one);
- `booked`: an active booking in any campaign; each campaign's own exit rule then decides
  what that stops (`exit.stop_nurture_on_booking`: its nurture from email 2 on);
- `paused` is not merged: a pause is a marketer's decision about one campaign's sequence.

The exit rule (`core.exit_rules`) is unchanged: it reads the merged flags, so the plan
and the gate at the moment of sending both see them. A forgotten address is suppressed
as well, by the store (`adapters.sql.forget`), for every campaign alike.
"""

from __future__ import annotations

import pandas as pd

from xmas_pipeline.core.email_events import stronger_state

# What a campaign's contact-flag read returns (`core.ports.BookingLedger.load_contact_flags`).
FLAG_COLUMNS = ["contact_key", "unsubscribed", "paused", "delivery_state", "booked"]
# One record of a flag found in some campaign: where it was kept does not matter.
RECORD_COLUMNS = ["campaign", "contact_key", "unsubscribed", "delivery_state", "booked"]
# The message event kinds that put an address on the list (a soft bounce does not).
SUPPRESSING_EVENTS = ("unsubscribed", "bounced", "complained")


def _bools(values: pd.Series) -> pd.Series:
    filled = values.where(values.notna(), False) if values.dtype == object else values.fillna(0)
    return filled.astype(bool)


def fold_records(records: pd.DataFrame) -> pd.DataFrame:
    """One row per contact key from flag records of any campaign (`RECORD_COLUMNS`):
    unsubscribed or booked anywhere, the strongest delivery state anywhere."""
    if records.empty:
        return pd.DataFrame(
            {
                "contact_key": pd.Series(dtype=object),
                "unsubscribed": pd.Series(dtype=bool),
                "delivery_state": pd.Series(dtype=object),
                "booked": pd.Series(dtype=bool),
            }
        )
    frame = pd.DataFrame(
        {
            "contact_key": records["contact_key"].astype(str).to_numpy(),
            "unsubscribed": _bools(records["unsubscribed"]).to_numpy(),
            "delivery_state": records["delivery_state"].fillna("").astype(str).to_numpy(),
            "booked": _bools(records["booked"]).to_numpy(),
        }
    )
    grouped = frame.groupby("contact_key", sort=True)
    states = grouped["delivery_state"].agg(_strongest)
    out = pd.DataFrame(
        {
            "unsubscribed": grouped["unsubscribed"].any(),
            "delivery_state": states,
            "booked": grouped["booked"].any(),
        }
    )
    return out.reset_index()


def _strongest(states: pd.Series) -> str:
    found = ""
    for state in states:
        found = stronger_state(found, str(state))
    return found


def merge_across_campaigns(own: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """A campaign's contact flags (`FLAG_COLUMNS`) with every campaign's records folded
    in: a flag set anywhere is set here. A contact this campaign has no contact row for
    (a person who unsubscribed through another campaign's email) gets one, unpaused."""
    folded = fold_records(records)
    base = own.reindex(columns=FLAG_COLUMNS).copy()
    base["contact_key"] = base["contact_key"].astype(str)
    base["unsubscribed"] = _bools(base["unsubscribed"])
    base["paused"] = _bools(base["paused"])
    base["booked"] = _bools(base["booked"])
    base["delivery_state"] = base["delivery_state"].fillna("").astype(str)
    if folded.empty:
        return base.reset_index(drop=True)
    base = base.drop_duplicates("contact_key", keep="last")
    missing = folded.loc[~folded["contact_key"].isin(set(base["contact_key"]))]
    if not missing.empty:
        extra = missing.assign(paused=False).reindex(columns=FLAG_COLUMNS)
        base = pd.concat([base, extra], ignore_index=True) if not base.empty else extra
    index = folded.set_index("contact_key")
    keys = base["contact_key"]
    theirs_unsub = _bools(keys.map(index["unsubscribed"])).to_numpy()
    theirs_booked = _bools(keys.map(index["booked"])).to_numpy()
    theirs_state = keys.map(index["delivery_state"]).fillna("").astype(str)
    base["unsubscribed"] = base["unsubscribed"].to_numpy(dtype=bool) | theirs_unsub
    base["booked"] = base["booked"].to_numpy(dtype=bool) | theirs_booked
    base["delivery_state"] = [
        stronger_state(str(a), str(b))
        for a, b in zip(base["delivery_state"], theirs_state, strict=True)
    ]
    base["paused"] = _bools(base["paused"]).to_numpy(dtype=bool)
    return base.reset_index(drop=True)
