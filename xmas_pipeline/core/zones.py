"""Time zone names from input: whether a name is a known IANA zone, and its `ZoneInfo`.

`ZoneInfo(name)` is not a check: a folder of the zone database ("America") raises
IsADirectoryError, an absurdly long name OSError, a path trick ("../..") or a NUL
ValueError, and a non-string TypeError. So every zone that comes from input (a signup, a
Cal.com booking, the campaign file, a stored row) is looked up in the set of zones the
database lists, and only a member is ever opened.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

UTC_NAME = "UTC"
# A system link to the host's own zone, not an IANA name: it would mean a different zone on
# every machine.
_NOT_ZONES = frozenset({"localtime"})


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def known_zone(value: object) -> str:
    """`value` (stripped) when it names a known IANA zone, else "" (whatever the value)."""
    if not isinstance(value, str):
        return ""
    name = value.strip()
    return name if name in _known_zones() else ""


def is_known_zone(value: object) -> bool:
    return known_zone(value) != ""


def zone_info(name: object, fallback: str = UTC_NAME) -> ZoneInfo:
    """The zone `name` names, or `fallback` (itself a known zone) when it names none."""
    return ZoneInfo(known_zone(name) or fallback)
