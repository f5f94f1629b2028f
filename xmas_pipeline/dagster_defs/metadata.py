"""Small helpers that turn frames and lists into metadata people read in the UI."""

from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
import pandas as pd


def md_table(
    rows: Iterable[Mapping[str, Any]], columns: list[str], limit: int = 50
) -> dg.MetadataValue:
    rows = list(rows)
    if not rows:
        return dg.MetadataValue.md("_none_")
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join(
        "| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |\n" for row in rows[:limit]
    )
    more = f"\n_{len(rows) - limit} more not shown_" if len(rows) > limit else ""
    return dg.MetadataValue.md(head + body + more)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")[:300]


def counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}
