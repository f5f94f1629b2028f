"""Which nurture emails are due now: a vectorised computation over the sequences frame.

Rules:
- a step is due when `signup_at + delay <= now` and it has not been sent;
- a later step (after the welcome) goes only while the campaign's send window is open in
  the reader's own time zone, and never sooner than `min_gap` after the last nurture email
  that person got: a catch-up after an outage spreads over days, in daytime;
- the gap holds across campaigns too (given the last nurture email each person got from
  every other campaign, `elsewhere`): never two nurture emails to one person within the
  longer of the two campaigns' `min_gap`s. The welcome still goes at once (it answers the
  signup), and it counts as the last nurture email for the other campaigns;
- a run catches up everything due, but sends at most one nurture email per person: the
  earliest unsent due step (the next run sends the one after);
- a sequence awaiting its double opt-in confirmation gets none (`core.optin`);
- the exit rule (`core.exit_rules`) turns a due row into `exit` (stop the sequence for
  good, with the reason) or `skip` (not now: a paused contact; retried once unpaused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from xmas_pipeline.core.campaign import Campaign, SendWindow
from xmas_pipeline.core.exit_rules import exit_actions
from xmas_pipeline.core.sequence_frame import sent_column
from xmas_pipeline.core.zones import zone_info

DUE_COLUMNS: list[str] = [
    "message_id",
    "contact_key",
    "email",
    "kind",
    "step_id",
    "step_number",
    "segment",
    "due_at",
    "due_day",
    "action",
    "reason",
]


@cache
def _nothing_due() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in DUE_COLUMNS})
    frame["step_number"] = frame["step_number"].astype("int64")
    frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
    return frame


def empty_due() -> pd.DataFrame:
    # Made once, copied after: most plans of most campaigns are empty.
    return _nothing_due().copy()


def step_due_times(sequences: pd.DataFrame, campaign: Campaign) -> np.ndarray:
    """A (rows x steps) matrix of due times in int64 nanoseconds since the epoch (UTC)."""
    signup_ns = sequences["signup_at"].to_numpy(dtype="datetime64[ns]").astype("int64")
    delays_ns = np.array(
        [int(step.delay.total_seconds() * 1e9) for step in campaign.steps], dtype="int64"
    )
    return signup_ns[:, None] + delays_ns[None, :]


# The last nurture email each person got from each other campaign (a store read).
ELSEWHERE_COLUMNS = ["contact_key", "campaign", "sent_at"]


def compute_due(
    sequences: pd.DataFrame,
    campaign: Campaign,
    now: datetime,
    *,
    elsewhere: pd.DataFrame | None = None,
    gaps: Mapping[str, timedelta] | None = None,
) -> pd.DataFrame:
    """One row per active sequence that has a step due now (see module docstring).

    `elsewhere`: the last nurture email per person and other campaign
    (`ELSEWHERE_COLUMNS`); `gaps`: those campaigns' `min_gap` by slug (a campaign not
    named there is taken to have this one's). None: this campaign's own emails only."""
    if sequences.empty:
        return empty_due()
    # A sequence awaiting its double opt-in confirmation gets nothing of the nurture yet.
    waiting = sequences.get("awaiting_confirmation", pd.Series(False, index=sequences.index))
    stopped = sequences["completed"].to_numpy(dtype=bool) | waiting.to_numpy(dtype=bool)
    active = sequences.loc[~stopped]
    if active.empty:
        return empty_due()

    now_ns = pd.Timestamp(now).tz_convert("UTC").as_unit("ns").value
    due_ns = step_due_times(active, campaign)
    unsent = np.column_stack(
        [active[sent_column(s.number)].isna().to_numpy() for s in campaign.steps]
    )
    due_mask = unsent & (due_ns <= now_ns)
    if campaign.send_window is not None:
        # The welcome (the first step) answers the signup whatever the hour.
        due_mask[:, 1:] &= window_open(active, campaign.send_window, now)[:, None]
    if campaign.min_gap > timedelta(0):
        due_mask &= rested(active, campaign, now_ns)[:, None]
    if elsewhere is not None and not elsewhere.empty:
        # Not the welcome: it answers the signup, whatever other campaigns sent.
        keys = active["contact_key"].astype(str)
        due_mask[:, 1:] &= rested_elsewhere(keys, campaign, now_ns, elsewhere, gaps)[:, None]
    has_due = due_mask.any(axis=1)
    if not has_due.any():
        return empty_due()

    first = due_mask.argmax(axis=1)[has_due]  # earliest unsent due step per person
    rows = active.loc[has_due]
    step_numbers = first + 1
    due_at = pd.to_datetime(due_ns[has_due, first], utc=True)

    action, reason = exit_actions(rows, campaign, "nurture", step_numbers)
    keys = rows["contact_key"].astype(str).to_numpy()
    step_ids = np.char.add("email-", step_numbers.astype(str))
    return _nurture_frame(
        f"{campaign.slug}/", keys, rows, step_ids, step_numbers, due_at, action, reason
    )


def _nurture_frame(
    prefixes: Any,
    keys: np.ndarray,
    rows: pd.DataFrame,
    step_ids: np.ndarray,
    step_numbers: np.ndarray,
    due_at: pd.DatetimeIndex,
    action: Any,
    reason: Any,
) -> pd.DataFrame:
    """The due nurture emails' frame; `prefixes`: each row's `<campaign slug>/` (one
    string for a single campaign)."""
    ids = np.char.add(np.char.add(prefixes, keys.astype(str)), "/")
    ids = np.char.add(ids, step_ids)
    return pd.DataFrame(
        {
            "message_id": ids.astype(object),
            "contact_key": keys.astype(object),
            "email": rows["email"].to_numpy(dtype=object),
            "kind": "nurture",
            "step_id": step_ids.astype(object),
            "step_number": step_numbers.astype("int64"),
            "segment": rows["segment"].to_numpy(dtype=object),
            "due_at": due_at,
            "due_day": due_at.strftime("%Y-%m-%d").to_numpy(dtype=object),
            "action": action,
            "reason": reason,
        }
    ).reset_index(drop=True)


def earliest_next_due(
    signup_at: datetime, sent_steps: Iterable[int], campaign: Campaign
) -> datetime | None:
    """When this sequence's next nurture email can fall due at the earliest: the signup
    plus the delay of the first step not sent yet (None: every step is sent). The send
    window, the gap and the exit rule only ever make it later, so a plan that leaves out
    the sequences whose bound lies ahead leaves out nothing due (the store keeps it as
    `next_due_at`, so what a send reads tracks what is due, not how many people there are).
    """
    sent = set(sent_steps)
    for step in campaign.steps:
        if step.number not in sent:
            return signup_at + step.delay
    return None


def window_open(sequences: pd.DataFrame, window: SendWindow, now: datetime) -> np.ndarray:
    """Per row: is it within the send window now, in the reader's time zone?"""
    zones = sequences.get("time_zone", pd.Series("", index=sequences.index))
    zones = zones.fillna("").astype(str)
    # A zone that is not a known IANA name (a row an older release stored) is the
    # default's, like a signup that named none.
    by_zone = {
        zone: window.is_open(now.astimezone(zone_info(zone, window.default_time_zone)).time())
        for zone in zones.unique()
    }
    return zones.map(by_zone).to_numpy(dtype=bool)


def rested(sequences: pd.DataFrame, campaign: Campaign, now_ns: int) -> np.ndarray:
    """Per row: has `min_gap` passed since the last nurture email this person got?"""
    sent = np.column_stack(
        [
            sequences[sent_column(s.number)].to_numpy(dtype="datetime64[ns]").astype("int64")
            for s in campaign.steps
        ]
    )
    never = np.iinfo("int64").min  # NaT: never sent
    last = np.where(sent == never, never, sent).max(axis=1)
    gap_ns = int(campaign.min_gap.total_seconds() * 1e9)
    return (last == never) | (now_ns - last >= gap_ns)


def rested_elsewhere(
    keys: pd.Series,
    campaign: Campaign,
    now_ns: int,
    elsewhere: pd.DataFrame,
    gaps: Mapping[str, timedelta] | None = None,
) -> np.ndarray:
    """Per contact key: has the longer of the two `min_gap`s passed since the last nurture
    email from each other campaign (`ELSEWHERE_COLUMNS`)?"""
    known = gaps or {}
    own_ns = int(campaign.min_gap.total_seconds() * 1e9)
    others = elsewhere["campaign"].astype(str)
    other_ns = others.map(
        lambda slug: int(known.get(slug, campaign.min_gap).total_seconds() * 1e9)
    ).to_numpy(dtype="int64")
    needed = np.maximum(other_ns, own_ns)
    sent_ns = (
        pd.to_datetime(elsewhere["sent_at"], utc=True, format="ISO8601")
        .to_numpy(dtype="datetime64[ns]")
        .astype("int64")
    )
    # A campaign's own email never counts here (its own gap is `rested`'s).
    too_soon = (now_ns - sent_ns < needed) & (others != campaign.slug).to_numpy()
    waiting = set(elsewhere["contact_key"].astype(str).to_numpy()[too_soon])
    return ~keys.isin(waiting).to_numpy(dtype=bool)


def due_in_range(due: pd.DataFrame, start_day: str, end_day: str) -> pd.DataFrame:
    """Rows whose due day lies in [start_day, end_day] (inclusive ISO dates)."""
    mask = (due["due_day"] >= start_day) & (due["due_day"] <= end_day)
    return due.loc[mask].reset_index(drop=True)


def stuck_after(campaign: Campaign) -> timedelta:
    """How long past due a message may wait before it counts as stuck: the shortest gap
    between two steps, kept between 5 minutes and an hour."""
    shortest = min(
        (b.delay - a.delay for a, b in zip(campaign.steps, campaign.steps[1:], strict=False)),
        default=timedelta(hours=1),
    )
    return max(timedelta(minutes=5), min(timedelta(hours=1), shortest))


def compute_due_together(
    sequences: pd.DataFrame,
    campaigns: Sequence[Campaign],
    now: datetime,
    *,
    elsewhere: Mapping[str, pd.DataFrame | None] | None = None,
    gaps: Mapping[str, Mapping[str, timedelta] | None] | None = None,
) -> pd.DataFrame:
    """`compute_due` of several campaigns in one pass: what is due in each, row for row
    as `compute_due` of that campaign alone, with a leading `CAMPAIGN_CODE` column (the
    campaign's position in `campaigns`). The fixed cost of a frame is paid once, however
    many campaigns there are.

    `sequences`: the campaigns' frames one after the other, each row's campaign in
    `CAMPAIGN_CODE`; every campaign has the same number of steps (its own delays, send
    window, `min_gap` and exit rule apply to its rows). `elsewhere`, `gaps`: each
    campaign's, by slug (as `compute_due`'s)."""
    if len({tuple(s.number for s in c.steps) for c in campaigns}) != 1:
        raise ValueError("compute_due_together: campaigns with the same step numbers")
    if sequences.empty:
        return _with_code(empty_due(), np.zeros(0, dtype="int64"))
    waiting = sequences.get("awaiting_confirmation", pd.Series(False, index=sequences.index))
    stopped = sequences["completed"].to_numpy(dtype=bool) | waiting.to_numpy(dtype=bool)
    active = sequences.loc[~stopped]
    if active.empty:
        return _with_code(empty_due(), np.zeros(0, dtype="int64"))
    codes = active[CAMPAIGN_CODE].to_numpy(dtype="int64")

    now_ns = pd.Timestamp(now).tz_convert("UTC").as_unit("ns").value
    delays = np.array(
        [[int(s.delay.total_seconds() * 1e9) for s in c.steps] for c in campaigns], dtype="int64"
    )
    signup_ns = active["signup_at"].to_numpy(dtype="datetime64[ns]").astype("int64")
    due_ns = signup_ns[:, None] + delays[codes]
    sent = np.column_stack(
        [
            active[sent_column(s.number)].to_numpy(dtype="datetime64[ns]").astype("int64")
            for s in campaigns[0].steps
        ]
    )
    never = np.iinfo("int64").min  # NaT: never sent
    due_mask = (sent == never) & (due_ns <= now_ns)
    windows = [c.send_window for c in campaigns]
    if any(w is not None for w in windows):
        # The welcome (the first step) answers the signup whatever the hour.
        due_mask[:, 1:] &= _windows_open(active, windows, codes, now)[:, None]
    gap_ns = np.array([int(c.min_gap.total_seconds() * 1e9) for c in campaigns], dtype="int64")
    if (gap_ns > 0).any():
        last = sent.max(axis=1)
        row_gap = gap_ns[codes]
        rested_rows = (row_gap <= 0) | (last == never) | (now_ns - last >= row_gap)
        due_mask &= rested_rows[:, None]
    others = {
        i: frame
        for i, c in enumerate(campaigns)
        if (frame := (elsewhere or {}).get(c.slug)) is not None and not frame.empty
    }
    if others:
        # Not the welcome: it answers the signup, whatever other campaigns sent.
        keys = active["contact_key"].astype(str).to_numpy()
        ok = _rested_elsewhere_together(keys, codes, campaigns, now_ns, others, gaps or {})
        due_mask[:, 1:] &= ok[:, None]
    has_due = due_mask.any(axis=1)
    if not has_due.any():
        return _with_code(empty_due(), np.zeros(0, dtype="int64"))

    first = due_mask.argmax(axis=1)[has_due]
    rows = active.loc[has_due]
    row_codes = codes[has_due]
    step_numbers = first + 1
    due_at = pd.to_datetime(due_ns[has_due, first], utc=True)

    action = np.empty(len(rows), dtype=object)
    reason = np.empty(len(rows), dtype=object)
    # One call per distinct exit rule (most often one for every campaign).
    rules: dict[str, list[int]] = {}
    for i, c in enumerate(campaigns):
        rules.setdefault(c.exit.model_dump_json(), []).append(i)
    for members in rules.values():
        if len(rules) == 1:
            action[:], reason[:] = exit_actions(
                rows, campaigns[members[0]], "nurture", step_numbers
            )
            continue
        pick = np.isin(row_codes, members)
        if pick.any():
            action[pick], reason[pick] = exit_actions(
                rows.loc[pick], campaigns[members[0]], "nurture", step_numbers[pick]
            )
    keys = rows["contact_key"].astype(str).to_numpy()
    step_ids = np.char.add("email-", step_numbers.astype(str))
    prefixes = np.array([f"{c.slug}/" for c in campaigns])[row_codes]
    frame = _nurture_frame(prefixes, keys, rows, step_ids, step_numbers, due_at, action, reason)
    frame.insert(0, CAMPAIGN_CODE, row_codes)
    return frame


# The column of `compute_due_together`'s frames naming each row's campaign (its position).
CAMPAIGN_CODE = "_campaign"


def _with_code(frame: pd.DataFrame, codes: np.ndarray) -> pd.DataFrame:
    frame.insert(0, CAMPAIGN_CODE, codes)
    return frame


def _windows_open(
    active: pd.DataFrame, windows: list[SendWindow | None], codes: np.ndarray, now: datetime
) -> np.ndarray:
    """`window_open` per row, each row judged by its own campaign's window (None: open)."""
    zones = active.get("time_zone", pd.Series("", index=active.index))
    zone_codes, names = pd.factorize(zones.fillna("").astype(str))
    table = np.ones((len(windows), len(names)), dtype=bool)
    for i, window in enumerate(windows):
        if window is None:
            continue
        for j, zone in enumerate(names):
            moment = now.astimezone(zone_info(zone, window.default_time_zone)).time()
            table[i, j] = window.is_open(moment)
    return table[codes, zone_codes]


def _rested_elsewhere_together(
    keys: np.ndarray,
    codes: np.ndarray,
    campaigns: Sequence[Campaign],
    now_ns: int,
    elsewhere: Mapping[int, pd.DataFrame],
    gaps: Mapping[str, Mapping[str, timedelta] | None],
) -> np.ndarray:
    """`rested_elsewhere` per row, each row against its own campaign's `elsewhere`."""
    frame = pd.concat(
        [part[["contact_key", "campaign", "sent_at"]] for part in elsewhere.values()],
        ignore_index=True,
    )
    owner = np.repeat(list(elsewhere), [len(part) for part in elsewhere.values()])
    slug_codes, slugs = pd.factorize(frame["campaign"].astype(str))
    needed = np.zeros((len(campaigns), len(slugs)), dtype="int64")
    own = np.zeros((len(campaigns), len(slugs)), dtype=bool)
    for i in elsewhere:
        campaign = campaigns[i]
        known = gaps.get(campaign.slug) or {}
        own_ns = int(campaign.min_gap.total_seconds() * 1e9)
        for j, slug in enumerate(slugs):
            other = int(known.get(slug, campaign.min_gap).total_seconds() * 1e9)
            needed[i, j] = max(other, own_ns)
            own[i, j] = slug == campaign.slug
    sent_ns = (
        pd.to_datetime(frame["sent_at"], utc=True, format="ISO8601")
        .to_numpy(dtype="datetime64[ns]")
        .astype("int64")
    )
    # A campaign's own email never counts here (its own gap is `rested`'s).
    too_soon = (now_ns - sent_ns < needed[owner, slug_codes]) & ~own[owner, slug_codes]
    waiting = pd.MultiIndex.from_arrays(
        [owner[too_soon], frame["contact_key"].astype(str).to_numpy()[too_soon]]
    )
    if waiting.empty:
        return np.ones(len(keys), dtype=bool)
    return ~pd.MultiIndex.from_arrays([codes, keys]).isin(waiting)
