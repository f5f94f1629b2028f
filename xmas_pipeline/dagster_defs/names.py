"""The names of each campaign's definitions: one rule, used everywhere.

A campaign's assets are keyed `<prefix>/<name>` and its jobs, schedules and ops are
named `<prefix>__<name>`, where the prefix is its slug with `-` as `_` (Dagster names
allow no hyphen): `christmas_2025/deliveries`, `christmas_2025__send_due_emails`. A slug
never holds `--`, so a prefix never holds `__` and a name splits back unambiguously.
"""

import dagster as dg

SEPARATOR = "__"


def prefix_of(slug: str) -> str:
    """The campaign's asset key prefix and group name (`christmas-2025` -> `christmas_2025`)."""
    return slug.replace("-", "_")


def campaign_name(slug: str, name: str) -> str:
    """A campaign's job, schedule or op name (`christmas_2025__send_due_emails`); also the
    op name Dagster gives the asset `campaign_key(slug, name)`, for run config."""
    return f"{prefix_of(slug)}{SEPARATOR}{name}"


def campaign_key(slug: str, name: str) -> dg.AssetKey:
    """A campaign's asset key (`christmas_2025/deliveries`)."""
    return dg.AssetKey([prefix_of(slug), name])


def base_name(name: str) -> str:
    """The name without its campaign prefix (`christmas_2025__send_due_emails` ->
    `send_due_emails`); a global name as it is."""
    return name.split(SEPARATOR, 1)[1] if SEPARATOR in name else name
