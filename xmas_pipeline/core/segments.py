"""The segment rule: CRITICAL with 2+ red systems; else URGENT with 1 red or 2+ orange;
else OPTIMIZE."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd


class Segment(StrEnum):
    CRITICAL = "CRITICAL"
    URGENT = "URGENT"
    OPTIMIZE = "OPTIMIZE"


ALL_SEGMENTS: tuple[Segment, ...] = (Segment.CRITICAL, Segment.URGENT, Segment.OPTIMIZE)


def classify(red_systems: int, orange_systems: int) -> Segment:
    if red_systems >= 2:
        return Segment.CRITICAL
    if red_systems == 1 or orange_systems >= 2:
        return Segment.URGENT
    return Segment.OPTIMIZE


def classify_frame(red: pd.Series, orange: pd.Series) -> pd.Series:
    """Vectorised `classify` for a whole frame."""
    red = red.fillna(0).astype(int)
    orange = orange.fillna(0).astype(int)
    values = np.select(
        [red >= 2, (red == 1) | (orange >= 2)],
        [Segment.CRITICAL.value, Segment.URGENT.value],
        default=Segment.OPTIMIZE.value,
    )
    return pd.Series(values, index=red.index, dtype="object")
