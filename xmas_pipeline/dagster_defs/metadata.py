"""Small helpers that turn frames and lists into metadata people read in the UI."""

import re
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.core.segments import ALL_SEGMENTS

# Who answers for every asset (shown on each asset page).
OWNERS = ["team:marketing-ops"]


def in_group(name: str) -> dict[str, Any]:
    """The asset-group arguments every asset of group `name` shares (owners included)."""
    return {"group_name": name, "owners": OWNERS}


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


def frame_table(frame: pd.DataFrame, limit: int = 50) -> dg.MetadataValue:
    """A whole frame as a markdown table, columns in the frame's order."""
    return md_table(frame.to_dict("records"), [str(c) for c in frame.columns], limit=limit)


def reached_metadata(reached: pd.DataFrame) -> dict[str, Any]:
    """`core.funnel.steps_reached` as plottable totals plus the per-segment table."""
    steps = [c for c in reached.columns if c not in ("segment", "completed", "total")]
    return {
        **{f"reached {step}": int(reached[step].sum()) for step in steps},
        "completed or exited": int(reached["completed"].sum()),
        "by step reached": frame_table(reached),
    }


def reasons_table(problems: pd.DataFrame) -> dg.MetadataValue:
    """How many messages each reason held back, most frequent first."""
    if problems.empty:
        return md_table([], [])
    grouped = (
        problems.groupby(["outcome", "reason"]).size().rename("messages").reset_index()
    ).sort_values(["messages", "outcome", "reason"], ascending=[False, True, True])
    return frame_table(grouped)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")
_MD_LINE_START = re.compile(r"^(\s*)(?:([-+=])|(\d+)([.)]))")
_URL = re.compile(r"(https?://[^\s()<>]+)")


def md_escape(text: str) -> str:
    """Text shown literally in markdown (a template's words must not turn into markup).
    Links stay as they are, so the UI still shows them as links."""
    parts = _URL.split(text)
    escaped = "".join(p if i % 2 else _MD_SPECIAL.sub(r"\\\1", p) for i, p in enumerate(parts))
    # A line starting like a list item or a heading underline stays plain text.
    return _MD_LINE_START.sub(_escape_line_start, escaped)


def _escape_line_start(match: re.Match[str]) -> str:
    indent, bullet, number, dot = match.groups()
    return f"{indent}\\{bullet}" if bullet else f"{indent}{number}\\{dot}"


def email_preview(subject: str, template: str, text: str, limit: int = 4000) -> dg.MetadataValue:
    """A rendered email as a reader sees it: the subject, then the body in wrapped
    paragraphs (line breaks kept), so a reviewer reads it like the email itself."""
    body = text[:limit] + ("\n\n…" if len(text) > limit else "")
    paragraphs = [p.strip() for p in body.split("\n\n") if p.strip()]
    rendered = "\n\n".join(
        "  \n".join(md_escape(line) for line in p.splitlines()) for p in paragraphs
    )
    return dg.MetadataValue.md(
        f"**Subject: {md_escape(subject)}**\n\n_template `{template}`_\n\n---\n\n{rendered}\n"
    )


def segment_counts(segments: pd.Series) -> dict[str, int]:
    """Count per segment, every segment present (0 too), so each one plots as a line."""
    found = counts(segments) if len(segments) else {}
    return {s.value: found.get(s.value, 0) for s in ALL_SEGMENTS}


def rejected_files_check(day: str, rejected: list[dict[str, str]]) -> dg.AssetCheckResult:
    """The `no_rejected_files` check of an inbox asset: red, with every file and reason."""
    return dg.AssetCheckResult(
        check_name="no_rejected_files",
        passed=not rejected,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "day": day,
            "rejected": len(rejected),
            "files": md_table(rejected, ["file", "reason"]),
        },
    )
