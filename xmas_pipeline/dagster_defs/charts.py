"""Charts for the UI: PNG images drawn with matplotlib, shown as Markdown metadata.

The Dagster UI renders Markdown metadata with images whose source is a `data:` URI (its
Markdown sanitizer allows the `data` protocol on `src`, and the webserver's content
security policy does not restrict images), so each chart travels inside the
materialization event itself: nothing to serve, and any host running the UI shows it.

Figures are drawn on the Agg canvas directly (no pyplot: no display, no global figure
state shared between runs), 800 x 400 px, with matplotlib's bundled font, so the same data
gives the same bytes. An empty chart is still an image, saying there is nothing yet.

matplotlib is imported when a chart is drawn, not with this module: it is about a third
of a second of every process's start (each run worker, each code server), and only the
funnel and overview assets draw.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pandas as pd

from xmas_pipeline.core.funnel import Funnel
from xmas_pipeline.core.segments import ALL_SEGMENTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 100

# The stages a nurture email goes through, in funnel order ("booked" counts people).
FUNNEL_STAGES: list[str] = ["sent", "delivered", "opened", "clicked", "booked"]
SEGMENT_COLOURS: dict[str, str] = {
    "CRITICAL": "#c0392b",
    "URGENT": "#e67e22",
    "OPTIMIZE": "#2e86c1",
}
_KIND_ORDER = {"nurture": 0, "reminder": 1}
# One per campaign, in the campaigns folder's order (then round again).
CAMPAIGN_COLOURS: list[str] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" text chunk: the bytes then depend only on the drawing.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _nothing_yet(axes: Axes, title: str, message: str) -> None:
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, color="#555555")
    axes.set_xticks([])
    axes.set_yticks([])


def funnel_chart(funnel: Funnel) -> bytes:
    """Grouped bars: per funnel stage, one bar per segment (nurture emails only: reminders
    go to people who already booked)."""
    figure, axes = _figure()
    title = "Nurture funnel by segment"
    nurture = funnel.steps[funnel.steps["kind"] == "nurture"]
    totals = nurture.groupby("segment")[FUNNEL_STAGES].sum()
    if nurture.empty or int(totals["sent"].sum()) == 0:
        _nothing_yet(axes, title, "Nothing sent yet")
        return _png(figure)
    segments = [s.value for s in ALL_SEGMENTS]
    totals = totals.reindex(segments, fill_value=0)
    positions = np.arange(len(FUNNEL_STAGES))
    width = 0.8 / len(segments)
    for i, segment in enumerate(segments):
        bars = axes.bar(
            positions + (i - (len(segments) - 1) / 2) * width,
            totals.loc[segment, FUNNEL_STAGES].to_numpy(dtype="int64"),
            width,
            label=segment,
            color=SEGMENT_COLOURS.get(segment),
        )
        axes.bar_label(bars, fontsize=8, padding=1)
    axes.set_xticks(positions, ["emails sent", "delivered", "opened", "clicked", "booked"])
    axes.set_title(title)
    axes.set_xlabel("stage (booked: people who booked after a nurture email)")
    axes.set_ylabel("emails / people")
    axes.margins(y=0.12)  # room for the labels above the tallest bar
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(title="segment")
    figure.tight_layout()
    return _png(figure)


def sends_per_day_chart(sent_log: pd.DataFrame) -> bytes:
    """Stacked bars: emails sent per UTC day, one colour per step. Every accepted send is
    counted, a forced re-send too (it is an email someone received that day)."""
    figure, axes = _figure()
    title = "Emails sent per day, by step (UTC)"
    log = sent_log.reindex(columns=["sent_at", "kind", "step_id", "step_number"]).copy()
    log["day"] = pd.to_datetime(log["sent_at"], utc=True, format="ISO8601").dt.tz_localize(None)
    log = log.dropna(subset=["day"])
    if log.empty:
        _nothing_yet(axes, title, "Nothing sent yet")
        return _png(figure)
    log["day"] = log["day"].dt.normalize()
    log["order"] = log["kind"].map(_KIND_ORDER).fillna(9)
    steps = (
        log.drop_duplicates("step_id")
        .sort_values(["order", "step_number", "step_id"])["step_id"]
        .tolist()
    )
    per_day = log.groupby(["day", "step_id"]).size().unstack(fill_value=0)
    days = pd.date_range(per_day.index.min(), per_day.index.max(), freq="D")
    per_day = per_day.reindex(index=days, columns=steps, fill_value=0)
    colours = _step_colours(steps)
    bottom = np.zeros(len(days), dtype="int64")
    # One slot per day (days without sends too); a label on every k-th, at most about 12.
    x = np.arange(len(days))
    for step in steps:
        values = per_day[step].to_numpy(dtype="int64")
        axes.bar(x, values, 0.8, bottom=bottom, label=step, color=colours[step])
        bottom += values
    every = max(1, math.ceil(len(days) / 12))
    axes.set_xticks(x[::every], days[::every].strftime("%b %d"))
    axes.set_xlim(-0.6, len(days) - 0.4)
    axes.set_ylim(0, max(int(bottom.max()), 1) * 1.08)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title(title)
    axes.set_xlabel("day sent (UTC)")
    axes.set_ylabel("emails sent")
    axes.legend(title="step", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return _png(figure)


def campaign_sends_chart(per_day: pd.DataFrame, campaigns: list[str]) -> bytes:
    """Lines: emails sent per UTC day, one per campaign, from
    `core.campaigns_overview.sends_per_day` (column `day`, then one per campaign)."""
    figure, axes = _figure()
    title = "Emails sent per day, by campaign (UTC)"
    days = per_day["day"].tolist()
    if not campaigns or not days or int(per_day[campaigns].to_numpy().sum()) == 0:
        _nothing_yet(axes, title, f"Nothing sent in these {len(days)} days")
        return _png(figure)
    x = np.arange(len(days))
    for i, slug in enumerate(campaigns):
        axes.plot(
            x,
            per_day[slug].to_numpy(dtype="int64"),
            marker="o",
            linewidth=2,
            label=slug,
            color=CAMPAIGN_COLOURS[i % len(CAMPAIGN_COLOURS)],
        )
    every = max(1, math.ceil(len(days) / 12))
    labels = pd.to_datetime(pd.Series(days[::every])).dt.strftime("%b %d").tolist()
    axes.set_xticks(x[::every], labels)
    axes.set_xlim(-0.5, len(days) - 0.5)
    axes.set_ylim(0, max(int(per_day[campaigns].to_numpy().max()), 1) * 1.1)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title(title)
    axes.set_xlabel("day sent (UTC)")
    axes.set_ylabel("emails sent")
    axes.legend(title="campaign", fontsize=8, loc="upper left")
    figure.tight_layout()
    return _png(figure)


def _step_colours(steps: list[str]) -> dict[str, str]:
    """Nurture steps in blues and greens, reminders in oranges: told apart at a glance."""
    nurture = ["#08306b", "#2171b5", "#6baed6", "#41ab5d", "#238b45", "#74c476", "#a1d99b"]
    reminders = ["#d94801", "#fd8d3c", "#fdd0a2"]
    colours: dict[str, str] = {}
    n = r = 0
    for step in steps:
        if step.startswith("reminder"):
            colours[step] = reminders[r % len(reminders)]
            r += 1
        else:
            colours[step] = nurture[n % len(nurture)]
            n += 1
    return colours


def png_markdown(png: bytes, alt: str, caption: str = "") -> dg.MetadataValue:
    """A PNG as Markdown metadata: an image with a `data:` URI, then an optional caption."""
    alt = alt.replace("[", "(").replace("]", ")")
    encoded = base64.b64encode(png).decode("ascii")
    text = f"![{alt}](data:image/png;base64,{encoded})"
    return dg.MetadataValue.md(text + (f"\n\n_{caption}_" if caption else ""))


def funnel_charts_metadata(funnel: Funnel, sent_log: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """The `funnel` asset's two charts, as Markdown metadata entries."""
    return {
        "funnel chart": png_markdown(
            funnel_chart(funnel),
            "Nurture funnel: emails sent, delivered, opened, clicked, and people booked, "
            "per segment",
            "Nurture emails only. Delivered, opened and clicked come from Resend's webhooks "
            "(0 with the local outbox).",
        ),
        "sends per day chart": png_markdown(
            sends_per_day_chart(sent_log),
            "Emails sent per day, stacked by step",
            "Every accepted send, forced re-sends included, on the UTC day it was sent.",
        ),
    }
