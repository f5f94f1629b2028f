"""The cross-campaign view's counting: sends per UTC day and campaign, and every
campaign's funnel side by side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from xmas_pipeline.core.campaigns_overview import (
    FUNNEL_ROWS,
    funnels_side_by_side,
    sends_per_day,
    window,
)
from xmas_pipeline.core.funnel import compute_funnel, events_from_status

OLD, NEW = "christmas-2025", "christmas-2026"


def send(key: str, step: int, sent_at: Any, slug: str = OLD, provider: str = "") -> dict:
    return {
        "message_id": f"{slug}/{key}/email-{step}",
        "contact_key": key,
        "kind": "nurture",
        "step_id": f"email-{step}",
        "step_number": step,
        "segment": "CRITICAL",
        "sent_at": sent_at,
        "provider_id": provider or f"re-{slug}-{key}-{step}",
    }


def people(*rows: tuple[str, str, bool, bool]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"contact_key": k, "segment": s, "booked": b, "unsubscribed": u} for k, s, b, u in rows],
        columns=["contact_key", "segment", "booked", "unsubscribed"],
    )


def test_window_is_the_days_ending_on_the_last_day_oldest_first() -> None:
    assert window("2026-03-01", 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert window("2026-12-07", 1) == ["2026-12-07"]
    with pytest.raises(ValueError, match="at least 1"):
        window("2026-12-07", 0)


def test_sends_per_day_counts_each_campaigns_sends_on_their_utc_day() -> None:
    old = pd.DataFrame(
        [
            send("a@x.com", 1, "2026-12-01T09:00:00+00:00"),
            send("b@x.com", 1, "2026-12-01T23:59:00+00:00"),
            # 00:30 in Paris is still the evening before in UTC.
            send("c@x.com", 1, "2026-12-03T00:30:00+01:00"),
            # A forced re-send of a message: another email that day, counted.
            send("a@x.com", 1, "2026-12-03T10:00:00+00:00", provider="re-again"),
            # Before the window: not shown.
            send("d@x.com", 1, "2026-11-28T12:00:00+00:00"),
        ]
    )
    new = pd.DataFrame(
        [
            send("x@x.com", 1, datetime(2026, 12, 2, 8, tzinfo=UTC), NEW),
            send("x@x.com", 2, datetime(2026, 12, 4, 8, tzinfo=UTC), NEW),
            send("y@x.com", 1, datetime(2026, 12, 4, 9, tzinfo=UTC), NEW),
            # After the last day shown (a clock ahead): not shown either.
            send("z@x.com", 1, datetime(2026, 12, 5, 0, 1, tzinfo=UTC), NEW),
        ]
    )
    table = sends_per_day({NEW: new, OLD: old}, "2026-12-04", days=4)
    expected = pd.DataFrame(
        {
            "day": ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"],
            NEW: [0, 1, 0, 2],
            OLD: [2, 1, 1, 0],
            "all campaigns": [2, 2, 1, 2],
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    # Columns in the order the campaigns were given, then the total.
    assert list(table.columns) == ["day", NEW, OLD, "all campaigns"]


def test_a_campaign_that_sent_nothing_has_a_column_of_zeros() -> None:
    log = pd.DataFrame([send("a@x.com", 1, "2026-12-07T08:00:00Z")])
    table = sends_per_day({OLD: log, NEW: pd.DataFrame()}, "2026-12-07", days=2)
    assert table.to_dict("list") == {
        "day": ["2026-12-06", "2026-12-07"],
        OLD: [0, 1],
        NEW: [0, 0],
        "all campaigns": [0, 1],
    }
    assert sends_per_day({}, "2026-12-07", days=1).to_dict("list") == {
        "day": ["2026-12-07"],
        "all campaigns": [0],
    }


def test_funnels_side_by_side_one_column_per_campaign() -> None:
    t0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    old_log = pd.DataFrame(
        [
            send("a@x.com", 1, t0, provider="p-a1"),
            send("a@x.com", 2, t0 + timedelta(days=1), provider="p-a2"),
            send("b@x.com", 1, t0, provider="p-b1"),
            # A forced re-send of b's email-1: still one email in the funnel.
            send("b@x.com", 1, t0 + timedelta(hours=2), provider="p-b1-again"),
        ]
    )
    old_people = people(
        ("a@x.com", "CRITICAL", True, False),
        ("b@x.com", "CRITICAL", False, True),
        ("c@x.com", "URGENT", False, False),  # never emailed
        ("d@x.com", "OPTIMIZE", False, False),
    )
    status = pd.DataFrame(
        [
            {
                "provider_id": "p-a1",
                "message_id": f"{OLD}/a@x.com/email-1",
                "contact_key": "a@x.com",
                "status": "clicked",
                "status_at": t0 + timedelta(hours=1),
            },
            {
                "provider_id": "p-b1",
                "message_id": f"{OLD}/b@x.com/email-1",
                "contact_key": "b@x.com",
                "status": "bounced",
                "status_at": t0 + timedelta(hours=1),
            },
        ]
    )
    old = compute_funnel(old_log, events_from_status(status), old_people)
    new_log = pd.DataFrame([send("x@x.com", 1, t0, NEW, provider="p-x1")])
    new = compute_funnel(new_log, None, people(("x@x.com", "URGENT", False, False)))

    table = funnels_side_by_side({OLD: old, NEW: new})
    assert list(table.columns) == ["measure", OLD, NEW]
    assert table["measure"].tolist() == FUNNEL_ROWS
    by_row = {row["measure"]: (row[OLD], row[NEW]) for row in table.to_dict("records")}
    assert by_row == {
        "contacts": (4, 1),
        "people emailed": (2, 1),
        "emails sent": (3, 1),
        "delivered": (1, 0),
        "opened": (1, 0),
        "clicked": (1, 0),
        "bounced": (1, 0),
        "complained": (0, 0),
        "unsubscribed": (1, 0),
        "booked after a nurture email": (1, 0),
        "people booked": (1, 0),
        "open rate": ("33.3%", "0.0%"),
        "click rate": ("33.3%", "0.0%"),
        "booking conversion": ("25.0%", "0.0%"),
    }


def test_no_campaign_leaves_only_the_measures() -> None:
    table = funnels_side_by_side({})
    assert list(table.columns) == ["measure"]
    assert table["measure"].tolist() == FUNNEL_ROWS
