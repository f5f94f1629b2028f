"""The campaigns side by side: what each running campaign sent per day, and its funnel
next to the others'.

Plain pandas over what each campaign's `funnel` already reads, keyed by campaign slug
(in the order given, which is the campaigns folder's):

- `sends_per_day`: the sent logs (`StateStore.sent_log`) as one row per UTC day of a
  window ending on a given day, one column per campaign and one for all of them. Every
  accepted send counts, a forced re-send too: it is an email someone received that day
  (as the funnel's own sends-per-day chart counts them);
- `funnels_side_by_side`: each campaign's `Funnel` as one column of a table whose rows
  are the funnel's measures (people, then emails, then what people did).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import pandas as pd

from xmas_pipeline.core.funnel import Funnel

DAY_COLUMN = "day"
ALL_CAMPAIGNS = "all campaigns"
MEASURE_COLUMN = "measure"
# How many days the overview shows by default: two weeks, today included.
DEFAULT_DAYS = 14

# The funnel's rows, in reading order: (row label, where it comes from).
# People: from the contacts' sequences; emails: distinct messages (a re-send counts once).
PEOPLE_ROWS: list[tuple[str, str]] = [
    ("contacts", "contacts"),
    ("people emailed", "emailed"),
]
EMAIL_ROWS: list[tuple[str, str]] = [
    ("emails sent", "sent"),
    ("delivered", "delivered"),
    ("opened", "opened"),
    ("clicked", "clicked"),
    ("bounced", "bounced"),
    ("complained", "complained"),
    ("unsubscribed", "unsubscribed"),
    ("booked after a nurture email", "booked"),
]
BOOKED_ROW = "people booked"
RATE_ROWS: list[tuple[str, str]] = [
    ("open rate", "opened"),
    ("click rate", "clicked"),
]
CONVERSION_ROW = "booking conversion"
FUNNEL_ROWS: list[str] = [
    *(label for label, _ in PEOPLE_ROWS),
    *(label for label, _ in EMAIL_ROWS),
    BOOKED_ROW,
    *(label for label, _ in RATE_ROWS),
    CONVERSION_ROW,
]


def window(last_day: str, days: int = DEFAULT_DAYS) -> list[str]:
    """The `days` UTC days ending on `last_day` (YYYY-MM-DD), oldest first."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    last = date.fromisoformat(last_day)
    return [(last - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def send_days(sent_log: pd.DataFrame) -> pd.Series:
    """The UTC day (YYYY-MM-DD) of each accepted send of a sent log; rows without a
    `sent_at` are left out."""
    if sent_log.empty or "sent_at" not in sent_log.columns:
        return pd.Series([], dtype="object")
    at = pd.to_datetime(sent_log["sent_at"], utc=True, format="ISO8601").dropna()
    return at.dt.strftime("%Y-%m-%d")


def sends_per_day(
    sent_logs: Mapping[str, pd.DataFrame], last_day: str, days: int = DEFAULT_DAYS
) -> pd.DataFrame:
    """Sends per UTC day and campaign over the `days` days ending on `last_day`: column
    `day` (oldest first, every day of the window, 0 on days without sends), one int
    column per campaign of `sent_logs` in its order, then `all campaigns`."""
    shown = window(last_day, days)
    table = pd.DataFrame({DAY_COLUMN: shown})
    for slug, log in sent_logs.items():
        counted = send_days(log).value_counts()
        table[slug] = [int(counted.get(day, 0)) for day in shown]
    slugs = list(sent_logs)
    table[ALL_CAMPAIGNS] = table[slugs].sum(axis=1).astype("int64") if slugs else 0
    return table


def _percent(value: float) -> str:
    return f"{value:.1%}"


def funnel_column(funnel: Funnel) -> list[int | str]:
    """One campaign's funnel as the values of `FUNNEL_ROWS`, in that order: counts as
    ints, rates as percentages (`25.0%`)."""
    totals = funnel.totals()
    conversion = funnel.conversion
    values: list[int | str] = [int(conversion[column].sum()) for _, column in PEOPLE_ROWS]
    values += [totals[column] for _, column in EMAIL_ROWS]
    values.append(int(conversion["booked"].sum()))
    values += [_percent(funnel.rate(column)) for _, column in RATE_ROWS]
    values.append(_percent(funnel.overall_conversion()))
    return values


def funnels_side_by_side(funnels: Mapping[str, Funnel]) -> pd.DataFrame:
    """Every campaign's funnel in one table: column `measure` (`FUNNEL_ROWS`), then one
    column per campaign of `funnels`, in its order."""
    table = pd.DataFrame({MEASURE_COLUMN: FUNNEL_ROWS})
    for slug, funnel in funnels.items():
        table[slug] = pd.Series(funnel_column(funnel), dtype="object")
    return table
