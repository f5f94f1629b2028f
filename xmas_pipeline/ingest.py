"""Reading one inbox day of signups: valid events, and rejected files with reasons."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
from pydantic import ValidationError

from xmas_pipeline.adapters.inbox import Inbox, InboxFile
from xmas_pipeline.core.signup import Signup, SignupEvent, field_errors


@dataclass
class Rejected:
    file: str
    reason: str


@dataclass
class SignupBatch:
    events: list[SignupEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    repeats: int = 0  # files repeating a contact seen earlier the same day

    def frame(self) -> pd.DataFrame:
        rows = [
            {
                **event.signup.model_dump(),
                "contact_key": event.contact_key,
                "segment": event.signup.segment.value,
                "received_at": event.received_at,
                "source": event.source,
            }
            for event in self.events
        ]
        return pd.DataFrame(rows)


def parse_signup_file(inbox: Inbox, item: InboxFile) -> SignupEvent:
    """One file -> one event; ValueError with a readable reason otherwise."""
    try:
        raw = inbox.read(item)
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
    return SignupEvent(signup=signup, received_at=item.received_at, source=item.ref)


def read_signup_day(inbox: Inbox, day: str) -> SignupBatch:
    batch = SignupBatch()
    seen: set[str] = set()
    for item in inbox.files("signups", day):
        try:
            event = parse_signup_file(inbox, item)
        except (ValueError, OSError) as exc:
            batch.rejected.append(Rejected(file=item.ref, reason=str(exc)))
            continue
        # A repeat is kept: the store turns an exact re-delivery into a no-op and a newer
        # assessment into a profile refresh, never into a second sequence.
        batch.repeats += event.contact_key in seen
        seen.add(event.contact_key)
        batch.events.append(event)
    return batch
