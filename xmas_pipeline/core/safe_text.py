"""Text that may reach an email header: which characters it must never hold.

A name ends up in a subject line. Python's mail writer refuses a header holding anything
`str.splitlines` breaks on (CR, LF, VT, FF, U+001C-U+001E, U+0085, U+2028, U+2029), and
invisible format characters (bidi overrides U+202A-U+202E and U+2066-U+2069, marks
U+200E/U+200F, U+FEFF, ...) make a subject read other than it is. So names refuse every
character of the Unicode categories Cc (controls), Cf (format), Zl and Zp (line and
paragraph separators) and Cs (lone surrogates, which cannot be encoded at all), and the
renderer folds them out of every subject it writes.

The zero-width joiner and non-joiner (U+200D, U+200C) are format characters too, but they
are part of correct spelling in Persian and Indic scripts and of emoji sequences, and
they neither break a line nor reorder text: they are kept.
"""

from __future__ import annotations

import unicodedata

_BREAKING = frozenset({"Cc", "Zl", "Zp", "Cs"})  # become a space when folded
_INVISIBLE = frozenset({"Cf"})  # removed when folded
_JOINERS = frozenset({"\u200c", "\u200d"})

UNSAFE_REASON = "must not contain control characters, line breaks or invisible format characters"


def _unsafe(char: str) -> str:
    """ "break", "invisible" or "" for a character."""
    if char in _JOINERS:
        return ""
    category = unicodedata.category(char)
    if category in _BREAKING:
        return "break"
    if category in _INVISIBLE:
        return "invisible"
    return ""


def first_unsafe(value: str) -> str | None:
    """The first character a header must not hold, or None."""
    return next((char for char in value if _unsafe(char)), None)


def unsafe_problem(value: str) -> str | None:
    """Why `value` cannot be a name (naming the character's code point), or None."""
    char = first_unsafe(value)
    if char is None:
        return None
    return f"{UNSAFE_REASON} (found U+{ord(char):04X})"


def fold_unsafe(value: str) -> str:
    """`value` with every run of line breaks and controls as one space and invisible format
    characters removed: always safe for one header line."""
    out: list[str] = []
    for char in value:
        kind = _unsafe(char)
        if kind == "break":
            if not out or out[-1] != " ":
                out.append(" ")
        elif not kind:
            out.append(char)
    return "".join(out)
