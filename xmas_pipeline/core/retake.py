"""The retake rule: what a later signup from a known address may change.

Anyone can post any address with any name, so a later signup must never silently rewrite
the profile earlier emails were written for ("Hi Jamie" one day, "Hi <someone else's
text>" the next):

- identical data: nothing happens (a re-delivery);
- a sequence still awaiting its confirmation (double opt-in) has had nothing written for
  it but the confirmation email, which names nobody: the new signup replaces the profile;
- a running sequence takes the new assessment (scores, systems, segment, time zone: the
  emails still to come use them), but a different first name or business name is *held*:
  with double opt-in on, until the person confirms it through a link sent to the address;
  with it off, for the team to see (the store's `profile_changes`, the run's metadata),
  since nothing shows that the address's owner asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The fields that name the reader in every subject and greeting.
IDENTITY_FIELDS: tuple[str, ...] = ("first_name", "business_name")


@dataclass(frozen=True)
class RetakeDecision:
    apply: dict[str, Any] = field(default_factory=dict)  # written to the profile now
    held: dict[str, Any] = field(default_factory=dict)  # identity changes held back

    @property
    def unchanged(self) -> bool:
        return not self.apply and not self.held


def decide_retake(
    current: Mapping[str, Any], incoming: Mapping[str, Any], *, running: bool
) -> RetakeDecision:
    """What of `incoming` (a new signup's profile values) to apply to `current` (the
    stored profile). `running`: the sequence has started (emails were or are being
    written for the current profile)."""
    changed = {k: v for k, v in incoming.items() if current.get(k) != v}
    if not running:
        return RetakeDecision(apply=changed)
    held = {k: v for k, v in changed.items() if k in IDENTITY_FIELDS}
    apply = {k: v for k, v in changed.items() if k not in IDENTITY_FIELDS}
    return RetakeDecision(apply=apply, held=held)
