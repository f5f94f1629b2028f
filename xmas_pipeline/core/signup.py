"""The signup the website posts after the assessment, with the original fields and ranges."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
)

from xmas_pipeline.core.safe_text import unsafe_problem
from xmas_pipeline.core.segments import Segment, classify
from xmas_pipeline.core.sequence_frame import NUMBER_FIELDS
from xmas_pipeline.core.zones import known_zone


def _no_control(value: str) -> str:
    # Names reach subjects and headers: no control, line-break or invisible format
    # character (core.safe_text), and nothing legitimate in a name needs one.
    problem = unsafe_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Name = Annotated[str, Field(max_length=100), AfterValidator(_no_control)]
# No length cap: the original server took any business name, so only the intake's body
# limit bounds it (the SQL column is unbounded text).
BusinessName = Annotated[str, AfterValidator(_no_control)]
SystemName = Annotated[str, Field(max_length=100), AfterValidator(_no_control)]
# The assessment rates eight systems, so no count can exceed 8 (the original's range).
SystemCount = Annotated[int, Field(ge=0, le=8)]
Score = Annotated[int, Field(ge=0, le=100)]
# The assessment may report a gain as a negative leak: kept as given, within a sane bound.
LeakTotal = Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)]


class Signup(BaseModel):
    """The original signup JSON. Unknown keys are ignored, as the original server did."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore")

    email: EmailStr
    # Required, but may be empty as in the original: the emails then greet "there".
    first_name: Name
    business_name: BusinessName = ""
    assessment_score: Score
    red_systems: SystemCount = 0
    orange_systems: SystemCount = 0
    yellow_systems: SystemCount = 0
    green_systems: SystemCount = 0
    gps_score: Score = 0
    money_score: Score = 0
    weakest_system_1: SystemName = ""
    weakest_system_2: SystemName = ""
    revenue_leak_total: LeakTotal = 0
    # The reader's IANA time zone, as the website reads it from the browser (optional).
    # One we do not know (a folder such as "America", anything malformed, not a string)
    # is dropped, never refused: the campaign's default zone applies.
    timezone: str = ""

    @field_validator("timezone", mode="before")
    @classmethod
    def _known_zone(cls, value: Any) -> str:
        return known_zone(value)

    @field_validator("business_name", "weakest_system_1", "weakest_system_2", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    # Optional numbers: null means the default. assessment_score is required, so not here.
    @field_validator(*sorted(NUMBER_FIELDS - {"assessment_score"}), mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    @property
    def contact_key(self) -> str:
        return contact_key(self.email)

    @property
    def segment(self) -> Segment:
        return classify(self.red_systems, self.orange_systems)


def contact_key(email: str) -> str:
    """The contact key: the address, lower-cased (one contact whatever the case typed)."""
    return email.strip().lower()


class SignupEvent(BaseModel):
    """A validated signup plus where and when it arrived."""

    signup: Signup
    received_at: datetime
    source: str  # the inbox file it came from
    # The request it came in (`ip`, `user_agent`), when the intake kept it beside the file.
    request: dict[str, str] = {}

    @property
    def contact_key(self) -> str:
        return self.signup.contact_key


def field_errors(error: ValidationError) -> dict[str, str]:
    """Pydantic's errors as {field: reason}, for a 422 body or a rejected-file report."""
    reasons: dict[str, str] = {}
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "body"
        reasons.setdefault(field, item["msg"])
    return reasons


def parse_signup(raw: bytes, *, received_at: datetime, source: str) -> SignupEvent:
    """One signup file's bytes as an event; ValueError with a readable reason otherwise."""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    try:
        signup = Signup.model_validate(payload)
    except ValidationError as exc:
        reasons = "; ".join(f"{k}: {v}" for k, v in field_errors(exc).items())
        raise ValueError(f"invalid signup: {reasons}") from exc
    return SignupEvent(signup=signup, received_at=received_at, source=source)


def signups_frame(events: list[SignupEvent]) -> pd.DataFrame:
    """One row per signup (the `signups` asset's value): its fields, contact key, segment,
    arrival and file."""
    rows: list[dict[str, Any]] = [
        {
            **event.signup.model_dump(),
            "contact_key": event.contact_key,
            "segment": event.signup.segment.value,
            "received_at": event.received_at,
            "source": event.source,
        }
        for event in events
    ]
    return pd.DataFrame(rows)


def signups_from_frame(frame: pd.DataFrame) -> list[SignupEvent]:
    """`signups_frame` read back."""
    if frame.empty:
        return []
    fields = list(Signup.model_fields)
    return [
        SignupEvent(
            signup=Signup.model_validate({f: row[f] for f in fields}),
            received_at=pd.Timestamp(row["received_at"]).to_pydatetime(),
            source=str(row["source"]),
        )
        for row in frame.to_dict("records")
    ]
