"""Several campaigns planned in one pass (`core.send_plan.plan_due_together`) give each
campaign exactly its own plan (`plan_due`): the same rows, in the same order, with the
same actions and reasons, whatever cadence, window, gap and exit rule each one has."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import pytest

from xmas_pipeline.core.campaign import Campaign, ExitRules, SendWindow, load_campaign
from xmas_pipeline.core.due import compute_due_together
from xmas_pipeline.core.send_plan import CampaignState, plan_due, plan_due_together
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
ZONES = ["", "America/Toronto", "Europe/Paris", "Asia/Tokyo", "Not/AZone"]


def campaigns() -> list[Campaign]:
    base = load_campaign()
    slow = [
        step.model_copy(update={"delay": step.delay * 2 + timedelta(hours=1)})
        for step in base.steps
    ]
    return [
        base.model_copy(update={"slug": "alpha", "name": "alpha"}),
        # Another cadence, no window, a shorter gap.
        base.model_copy(
            update={
                "slug": "beta",
                "name": "beta",
                "steps": slow,
                "send_window": None,
                "min_gap": timedelta(hours=5),
            }
        ),
        # Another window and exit rule, no gap.
        base.model_copy(
            update={
                "slug": "gamma",
                "name": "gamma",
                "min_gap": timedelta(0),
                "send_window": SendWindow(
                    start=time(22, 0), end=time(6, 0), default_time_zone="Europe/London"
                ),
                "exit": ExitRules(stop_nurture_on_booking=False, stop_all_on=["unsubscribed"]),
            }
        ),
        # Fewer steps: planned apart from the others, still its own plan.
        base.model_copy(update={"slug": "delta", "name": "delta", "steps": base.steps[:3]}),
        # The testing preset's minutes.
        load_campaign(testing_mode=True).model_copy(update={"slug": "eps", "name": "eps"}),
    ]


def population(
    campaign: Campaign, people: list[str], rng: random.Random
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, extra = [], []
    for person in rng.sample(people, k=rng.randrange(5, len(people))):
        signup = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 12))
        row = {
            "contact_key": person,
            "email": person,
            "first_name": rng.choice(["Ann", "Bo", ""]),
            "assessment_score": rng.randrange(0, 100),
            "segment": rng.choice(["URGENT", "STABLE"]),
            "time_zone": rng.choice(ZONES),
            "signup_at": signup,
            "completed": rng.random() < 0.05,
            "unsubscribed": rng.random() < 0.05,
            "paused": rng.random() < 0.05,
            "booked": rng.random() < 0.1,
            "delivery_state": rng.choice(["", "", "", "bounced", "complained"]),
        }
        for step in campaign.steps[: rng.randrange(0, len(campaign.steps) + 1)]:
            late = timedelta(minutes=rng.randrange(0, 600))
            row[sent_column(step.number)] = signup + step.delay + late
        if rng.random() < 0.05:  # a double opt-in signup waiting for its confirmation
            row.update(
                awaiting_confirmation=True,
                confirm_subject=f"signup:{person}",
                confirm_requested_at=signup,
            )
        rows.append(row)
        if rng.random() < 0.2:  # flags kept on the contact row
            extra.append(
                {
                    "contact_key": person,
                    "unsubscribed": rng.random() < 0.3,
                    "paused": rng.random() < 0.3,
                    "delivery_state": rng.choice(["", "bounced"]),
                    "booked": rng.random() < 0.3,
                }
            )
    frame = normalise_sequences(pd.DataFrame(rows), len(campaign.steps))
    # One resolution for every time, as a store's read of several campaigns has them (the
    # campaigns whose frames differ in shape are each planned apart: `alpha` here).
    if campaign.slug != "alpha":
        for name, dtype in frame.dtypes.items():
            if isinstance(dtype, pd.DatetimeTZDtype):
                frame[name] = frame[name].astype("datetime64[us, UTC]")
    return frame, pd.DataFrame(extra)


def elsewhere(
    campaign: Campaign, slugs: list[str], people: list[str], rng: random.Random
) -> pd.DataFrame:
    rows = [
        {
            "contact_key": person,
            "campaign": rng.choice(slugs),
            "sent_at": T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 14)),
        }
        for person in rng.sample(people, k=len(people) // 3)
    ]
    return pd.DataFrame(rows).assign(sent_at=lambda f: pd.to_datetime(f["sent_at"], utc=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planning_together_gives_each_campaign_its_own_plan(seed: int) -> None:
    rng = random.Random(seed)
    camps = campaigns()
    slugs = [c.slug for c in camps]
    people = [f"p{n:03}@x.com" for n in range(80)]
    gaps = {c.slug: c.min_gap for c in camps}
    states = {}
    for c in camps:
        sequences, extra = population(c, people, rng)
        with_gap = rng.random() < 0.8
        states[c.slug] = CampaignState(
            sequences=sequences,
            contact_flags=extra if not extra.empty else None,
            elsewhere=elsewhere(c, slugs, people, rng) if with_gap else None,
            gaps=gaps if with_gap else None,
        )
    compared = confirmations = 0
    for hours in range(0, 24 * 16, 17):
        now = T0 + timedelta(hours=hours, minutes=rng.randrange(60))
        together = plan_due_together(states, camps, now)
        assert list(together) == slugs
        for c in camps:
            plan, sequences = plan_due(states[c.slug], c, now)
            pd.testing.assert_frame_equal(together[c.slug][0], plan)
            pd.testing.assert_frame_equal(together[c.slug][1], sequences)
            compared += len(plan)
            confirmations += int((plan["kind"] == "confirm").sum()) if len(plan) else 0
    # The plans compared were not all empty, and had every kind of row and action.
    assert compared > 500
    assert confirmations > 0


def test_the_campaigns_planned_together_share_their_steps() -> None:
    alpha, _, _, delta, _ = campaigns()
    frame = normalise_sequences(pd.DataFrame({"contact_key": ["a@x.com"]}), 5)
    with pytest.raises(ValueError, match="same step numbers"):
        compute_due_together(frame, [alpha, delta], T0)
