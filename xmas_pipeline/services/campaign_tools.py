"""The `xmas-pipeline campaign` tools: make a new campaign folder from another one, and
check a campaign folder the way a send run checks its templates.

`check_campaign` runs the blocking template check (`services.rendering.check_supervised`,
every template the cadence uses for every segment's sample contact, in a watched child)
on the folder's own template files, and names each problem's file and line, so a person
editing the files can go straight to it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path

from xmas_pipeline.core.campaign import CAMPAIGN_FILE_NAME
from xmas_pipeline.core.campaign_folders import (
    FolderResult,
    check_slug,
    date_problems,
    load_campaign_folder,
    shift_campaign_text,
)
from xmas_pipeline.core.render import TemplateError, TemplateSource, load_template_dir, resolve
from xmas_pipeline.services.rendering import check_supervised


class CampaignExists(ValueError):
    """The new campaign's folder is already there: nothing is overwritten."""


def new_campaign(
    campaigns_dir: Path,
    source_slug: str,
    slug: str,
    name: str | None = None,
    start: date | None = None,
) -> Path:
    """A new campaign folder `slug` with the cadence and templates of `source_slug`, its
    dates moved to `start` (default: a year after the source's); its path.

    ValueError for an invalid slug or a broken source, CampaignExists when the folder is
    there. The folder is written beside and renamed into place, so a failure leaves none."""
    check_slug(slug)
    target = campaigns_dir / slug
    if target.exists():
        raise CampaignExists(f"campaign {slug!r} already exists: {target}")
    source_folder = campaigns_dir / check_slug(source_slug)
    source = load_campaign_folder(source_folder)  # a broken source makes nothing
    text = (source_folder / CAMPAIGN_FILE_NAME).read_text(encoding="utf-8")
    # Without a name, one from the slug: "christmas-2026" -> "Christmas 2026".
    shifted = shift_campaign_text(text, slug, name or slug.replace("-", " ").title(), start)
    staging = campaigns_dir / f".{slug}.new"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source.templates_dir, staging / "templates")
        (staging / CAMPAIGN_FILE_NAME).write_text(shifted, encoding="utf-8")
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    load_campaign_folder(target)  # what was written loads, slug and all
    return target


# -- the check -----------------------------------------------------------------------------

_SYNTAX_LINE = re.compile(
    r"^(?P<name>[\w.-]+) (?P<part>subject|preheader|html): .*\(line (?P<n>\d+)\)"
)
_LINK_LINE = re.compile(r"line (?P<n>\d+) of (?P<name>[\w.-]+)")
_UNDEFINED = re.compile(r"^(?P<name>[\w.-]+): '(?P<var>\w+)' is undefined")


def check_campaign(result: FolderResult, link_hosts: Iterable[str], now: datetime) -> list[str]:
    """Everything wrong with one campaign folder ([]: ready): its file (cadence, fields,
    slug), its dates, and every template it sends for every segment, each problem led by
    `file:line` where it is known."""
    if result.campaign is None:
        assert result.error is not None
        return [str(result.error)]
    campaign = result.campaign.with_link_hosts(list(link_hosts))
    file = result.folder / CAMPAIGN_FILE_NAME
    problems = [f"{file}: {problem}" for problem in date_problems(campaign)]
    if not campaign.templates_dir.is_dir():
        return [*problems, f"{campaign.templates_dir}: the templates folder is missing"]
    try:
        sources = load_template_dir(campaign.templates_dir)
    except TemplateError as exc:  # a file without its front matter
        return [*problems, str(exc)]
    outcome = check_supervised(sources, campaign, now)
    return problems + [_located(problem, sources, file) for problem in outcome.problems]


def _located(problem: str, sources: Mapping[str, TemplateSource], campaign_file: Path) -> str:
    """The problem led by the template file (and line) it is about."""
    _, _, detail = problem.partition("]: ")
    for pattern in (_SYNTAX_LINE, _LINK_LINE, _UNDEFINED):
        match = pattern.search(detail)
        if match and match["name"] in sources:
            source = sources[match["name"]]
            line = _file_line(source, match)
            return f"{source.origin}{f':{line}' if line else ''}: {problem}"
    # Otherwise the file the unit rendered: the segment's variant, else the universal one.
    label = re.match(r"(?P<base>[\w.-]+) \[(?P<segment>\w+)\]", problem)
    if label is None:
        return problem
    try:
        source = resolve(sources, label["base"], label["segment"])
    except TemplateError:
        return f"{campaign_file}: {problem}"
    return f"{source.origin}: {problem}"


def _file_line(source: TemplateSource, match: re.Match[str]) -> int | None:
    """The line of the template's file that a problem's match points at."""
    path = Path(source.origin)
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    body_start = next((i + 1 for i, line in enumerate(lines) if line == "---"), 0)
    groups = match.groupdict()
    if "var" in groups:  # the first line that uses the unknown name
        word = re.compile(rf"\b{re.escape(groups['var'])}\b")
        return next((i + 1 for i, line in enumerate(lines) if word.search(line)), None)
    part = groups.get("part", "html")
    if part != "html":  # a front-matter line: `subject: ...` or `preheader: ...`
        return next(
            (i + 1 for i, line in enumerate(lines) if line.lower().startswith(f"{part}:")), None
        )
    return body_start + int(groups["n"])
