"""Campaign folders: a campaigns directory holds one folder per campaign, named by its slug.

    campaigns/
      christmas-2025/
        campaign.yaml     the cadence, dates and settings (`core.campaign.Campaign`)
        templates/        its own email templates (`core.render`)

Discovery loads every folder on its own: a broken one is reported (its file and the
reason) and never stops the others from loading. The rules on dates a new campaign's file
is made with (`shift_campaign_text`) are here too, as plain text in, text out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml
from pydantic import ValidationError

from xmas_pipeline.core.campaign import CAMPAIGN_FILE_NAME, Campaign, load_campaign

# Lower-case letters, digits and single inner hyphens; it names a folder, a message id's
# first part and the store's rows, so it stays short and plain.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


def check_slug(slug: str) -> str:
    """The slug, or ValueError saying what a slug may be."""
    if not _SLUG.fullmatch(slug) or "--" in slug:
        shown = slug if len(slug) <= 40 else slug[:40] + "..."
        raise ValueError(
            f"invalid campaign slug {shown!r}: use lower-case letters, digits and hyphens "
            "(not at either end, nor two in a row), at most 64 characters, e.g. christmas-2026"
        )
    return slug


class CampaignFolderError(ValueError):
    """A campaign folder that cannot be loaded: the file at fault and why."""

    def __init__(self, file: Path, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"{file}: {reason}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for item in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in item["loc"])
            message = str(item["msg"]).removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts)
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())


def load_campaign_folder(folder: Path, testing_mode: bool = False) -> Campaign:
    """The campaign of one folder; CampaignFolderError naming the file when it is broken
    (no campaign file, bad YAML, a bad field, a slug other than the folder's name)."""
    file = folder / CAMPAIGN_FILE_NAME
    try:
        check_slug(folder.name)
    except ValueError as exc:
        raise CampaignFolderError(file, f"the folder's name: {exc}") from None
    if not file.is_file():
        raise CampaignFolderError(file, f"no {CAMPAIGN_FILE_NAME} in the campaign folder")
    try:
        campaign = load_campaign(file, testing_mode=testing_mode)
    except (ValueError, yaml.YAMLError, OSError) as exc:
        raise CampaignFolderError(file, _reason(exc)) from None
    if campaign.slug != folder.name:
        raise CampaignFolderError(
            file, f"slug {campaign.slug!r} is not the folder's name {folder.name!r}"
        )
    return campaign


@dataclass(frozen=True)
class FolderResult:
    """One folder of a campaigns directory: its campaign, or why it has none."""

    folder: Path
    campaign: Campaign | None = None
    error: CampaignFolderError | None = None

    @property
    def slug(self) -> str:
        return self.folder.name

    @property
    def ok(self) -> bool:
        return self.campaign is not None


def campaign_folders(directory: Path) -> list[Path]:
    """The campaign folders of a directory, by name (hidden and `_` folders are not)."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_dir() and not path.name.startswith((".", "_"))
    )


def discover_campaigns(directory: Path, testing_mode: bool = False) -> list[FolderResult]:
    """Every campaign folder of `directory`, each loaded on its own (with the testing
    preset when `testing_mode`)."""
    results = []
    for folder in campaign_folders(directory):
        try:
            campaign = load_campaign_folder(folder, testing_mode=testing_mode)
            results.append(FolderResult(folder, campaign=campaign))
        except CampaignFolderError as exc:
            results.append(FolderResult(folder, error=exc))
    return results


def date_problems(campaign: Campaign) -> list[str]:
    """What is wrong with a campaign's dates ([]: fine)."""
    try:
        start = date.fromisoformat(campaign.start_date)
    except ValueError:
        return [f"start_date {campaign.start_date!r} is not a date (YYYY-MM-DD)"]
    if campaign.signups_close is not None and campaign.signups_close < start:
        return [f"signups_close {campaign.signups_close} is before start_date {start}"]
    return []


def next_year(day: date) -> date:
    """The same day a year later (29 February becomes the 28th)."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


_DATE = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")


def _set_top_level(text: str, key: str, value: str) -> str:
    line = f"{key}: {value}"
    pattern = re.compile(rf"^{key}:.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    return text.rstrip("\n") + f"\n{line}\n"


def shift_campaign_text(text: str, slug: str, name: str, start: date | None) -> str:
    """A campaign file's text for a new campaign: its slug and name set, and every date in
    it moved by as much as its start date moves (to `start`, else a year on). Comments and
    layout are kept, so the new file reads like the one it came from."""
    check_slug(slug)
    raw = yaml.safe_load(text)
    source = Campaign.model_validate(raw)
    old_start = date.fromisoformat(source.start_date)
    shift = (start or next_year(old_start)) - old_start

    def moved(match: re.Match[str]) -> str:
        try:
            day = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return match[0]  # not a real date: left as it is
        return (day + shift).isoformat()

    shifted = _DATE.sub(moved, text)
    # Written out even when the source relied on the default start date.
    shifted = _set_top_level(shifted, "start_date", f'"{(old_start + shift).isoformat()}"')
    shifted = _set_top_level(shifted, "name", json.dumps(name, ensure_ascii=False))
    shifted = _set_top_level(shifted, "slug", slug)
    if re.search(r"^notion_select:", shifted, re.MULTILINE):
        # Its own Notion option, not the source's.
        shifted = _set_top_level(shifted, "notion_select", json.dumps(name, ensure_ascii=False))
    if re.search(r"^notion_status_property:", shifted, re.MULTILINE):
        # The CRM page is shared: the new campaign's status goes in a property of its own.
        status = json.dumps(f"{name} Campaign Status", ensure_ascii=False)
        shifted = _set_top_level(shifted, "notion_status_property", status)
    made = Campaign.model_validate(yaml.safe_load(shifted))
    if made.slug != slug or made.start_date != (old_start + shift).isoformat():
        raise ValueError("the campaign file could not be rewritten (unusual layout)")
    return shifted
