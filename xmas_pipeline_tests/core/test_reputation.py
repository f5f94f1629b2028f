"""The reputation rates: counted over the emails sent in the window, judged against the
lines, nothing below the minimum volume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from xmas_pipeline.core.reputation import (
    ReputationCounts,
    ReputationLimits,
    assess,
    count_window,
    window_start,
)

NOW = datetime(2025, 12, 10, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)


def sent_frame(n: int, at: datetime, prefix: str = "re_") -> pd.DataFrame:
    return pd.DataFrame({"provider_id": [f"{prefix}{i}" for i in range(n)], "sent_at": [at] * n})


def events(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["provider_id", "kind"])


def test_rates_count_each_message_once_and_only_messages_sent_in_the_window() -> None:
    sent = pd.concat(
        [sent_frame(100, NOW - timedelta(days=1)), sent_frame(50, NOW - timedelta(days=9), "old_")]
    )
    bad = events(
        ("re_1", "bounced"),
        ("re_1", "bounced"),  # a second event of the same message
        ("re_2", "bounced"),
        ("re_3", "complained"),
        ("old_1", "bounced"),  # sent before the window
        ("re_unknown", "bounced"),  # not one of ours
    )
    counts = count_window(sent, bad, SINCE, NOW)
    assert (counts.sent, counts.bounced, counts.complained) == (100, 2, 1)
    assert counts.bounce_rate == pytest.approx(0.02)
    assert counts.complaint_rate == pytest.approx(0.01)


def test_an_empty_store_counts_nothing() -> None:
    counts = count_window(sent_frame(0, NOW), events(), SINCE, NOW)
    assert counts.sent == 0 and counts.bounce_rate == 0.0 and counts.complaint_rate == 0.0


def counts(sent: int, bounced: int = 0, complained: int = 0) -> ReputationCounts:
    return ReputationCounts(SINCE, NOW, sent, bounced, complained)


LIMITS = ReputationLimits()  # 200 sent; 4% / 8% bounces; 0.08% / 0.3% complaints


@pytest.mark.parametrize(
    ("sent", "bounced", "complained", "level"),
    [
        (199, 100, 100, "too_few"),  # under the minimum, whatever the rates
        (1000, 39, 0, "ok"),
        (1000, 40, 0, "warn"),  # 4% bounces
        (1000, 79, 0, "warn"),
        (1000, 80, 0, "pause"),  # 8% bounces
        (10000, 0, 7, "ok"),
        (10000, 0, 8, "warn"),  # 0.08% complaints
        (10000, 0, 29, "warn"),
        (10000, 0, 30, "pause"),  # 0.3% complaints
        (10000, 500, 30, "pause"),  # the worse of the two decides
    ],
)
def test_levels_at_the_lines(sent: int, bounced: int, complained: int, level: str) -> None:
    assert assess(counts(sent, bounced, complained), LIMITS).level == level


def test_the_reason_names_the_rate_the_counts_and_the_line() -> None:
    result = assess(counts(250, 25, 1), LIMITS)
    assert result.level == "pause" and result.alarming
    text = result.describe()
    assert "bounce rate 10.00% (25 of 250 sent" in text and "pause line of 8.00%" in text
    assert "complaint rate 0.40%" in text
    assert not assess(counts(250, 1, 0), LIMITS).alarming
    assert "under the minimum of 200" in assess(counts(10, 5, 0), LIMITS).describe()


def test_the_window_starts_at_a_later_resume() -> None:
    week = timedelta(days=7)
    assert window_start(NOW, week, None) == NOW - week
    assert window_start(NOW, week, NOW - timedelta(days=30)) == NOW - week
    assert window_start(NOW, week, NOW - timedelta(hours=2)) == NOW - timedelta(hours=2)
