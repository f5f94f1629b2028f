"""Campaign folders: discovery (a broken folder never stops the others), slugs, the dates
of a new campaign's file, and the optional `signups_close`."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE, Campaign, load_campaign
from xmas_pipeline.core.campaign_folders import (
    CampaignFolderError,
    check_slug,
    date_problems,
    discover_campaigns,
    load_campaign_folder,
    next_year,
    shift_campaign_text,
)
from xmas_pipeline.core.render import load_template_dir
from xmas_pipeline.settings import Settings, SettingsError

SHIPPED = DEFAULT_CAMPAIGN_FILE.parent.parent


def _copy_default(directory: Path, slug: str = "christmas-2025") -> Path:
    folder = directory / slug
    shutil.copytree(DEFAULT_CAMPAIGN_FILE.parent, folder)
    return folder


def test_the_shipped_campaigns_are_folders_with_their_own_templates() -> None:
    results = {r.slug: r for r in discover_campaigns(SHIPPED)}
    assert set(results) == {"christmas-2025", "christmas-2026"}
    for slug, result in results.items():
        assert result.ok, result.error
        assert result.campaign is not None and result.campaign.slug == slug
        assert result.campaign.templates_dir == SHIPPED / slug / "templates"
        assert "email-1" in load_template_dir(result.campaign.templates_dir)
    assert results["christmas-2026"].campaign.start_date == "2026-11-01"  # type: ignore[union-attr]


def test_a_broken_folder_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    _copy_default(tmp_path)
    (tmp_path / "bad-yaml").mkdir()
    (tmp_path / "bad-yaml" / "campaign.yaml").write_text("name: [\n", encoding="utf-8")
    (tmp_path / "no-file").mkdir()
    wrong = _copy_default(tmp_path, "wrong-slug")
    (tmp_path / "Not_A_Slug").mkdir()
    (tmp_path / ".hidden").mkdir()  # not a campaign folder
    (tmp_path / "notes.txt").write_text("not a folder", encoding="utf-8")

    results = {r.slug: r for r in discover_campaigns(tmp_path)}

    assert sorted(results) == ["Not_A_Slug", "bad-yaml", "christmas-2025", "no-file", "wrong-slug"]
    assert results["christmas-2025"].ok
    broken = {slug: r.error for slug, r in results.items() if not r.ok}
    assert set(broken) == {"Not_A_Slug", "bad-yaml", "no-file", "wrong-slug"}
    for slug, error in broken.items():
        assert isinstance(error, CampaignFolderError)
        assert error.file == tmp_path / slug / "campaign.yaml"  # the file at fault, named
    assert "not valid YAML at line 2" in broken["bad-yaml"].reason  # type: ignore[union-attr]
    assert "no campaign.yaml" in broken["no-file"].reason  # type: ignore[union-attr]
    assert "invalid campaign slug 'Not_A_Slug'" in str(broken["Not_A_Slug"])
    assert str(broken["wrong-slug"]).endswith(
        "slug 'christmas-2025' is not the folder's name 'wrong-slug'"
    )
    assert wrong.exists()


def test_a_bad_field_names_the_file_and_the_field(tmp_path: Path) -> None:
    folder = _copy_default(tmp_path)
    file = folder / "campaign.yaml"
    file.write_text(file.read_text().replace("min_gap: 20h", "min_gap: soon"))
    with pytest.raises(CampaignFolderError) as caught:
        load_campaign_folder(folder)
    assert str(caught.value).startswith(f"{file}: min_gap: ")


@pytest.mark.parametrize("slug", ["christmas-2026", "a", "spring2", "x-1-y"])
def test_valid_slugs(slug: str) -> None:
    assert check_slug(slug) == slug


@pytest.mark.parametrize(
    "slug", ["", "Christmas", "xmas_26", "-x", "x-", "a--b", "a b", "../x", "é", "x" * 65]
)
def test_invalid_slugs_are_refused_with_what_a_slug_may_be(slug: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters, digits and hyphens"):
        check_slug(slug)


def test_a_new_campaigns_text_moves_every_date_and_keeps_the_comments() -> None:
    text = (
        "# Started 2025-11-01\n"
        "name: Christmas 2025\n"
        "slug: christmas-2025\n"
        "notion_select: Christmas 2025\n"
        'start_date: "2025-11-01"\n'
        'signups_close: "2025-12-24"\n'
        "steps:\n  - {number: 1, delay: 0h, template: email-1}\n"
    )
    made = shift_campaign_text(text, "winter-2026", "Winter 2026", date(2026, 11, 3))
    data = yaml.safe_load(made)
    assert data["name"] == "Winter 2026" and data["slug"] == "winter-2026"
    assert data["notion_select"] == "Winter 2026"  # its own Notion option
    assert data["start_date"] == "2026-11-03"
    assert data["signups_close"] == "2026-12-26"  # moved as far as the start
    assert made.startswith("# Started 2026-11-03\n")
    # Without a start date: a year after the source's.
    later = yaml.safe_load(shift_campaign_text(text, "next", "Next", None))
    assert later["start_date"] == "2026-11-01" and later["signups_close"] == "2026-12-24"


def test_a_new_campaigns_text_adds_a_missing_slug() -> None:
    text = 'name: Old\nstart_date: "2024-02-29"\nsteps: []\n'
    data = yaml.safe_load(shift_campaign_text(text, "new-one", "New", None))
    assert data["slug"] == "new-one" and data["start_date"] == "2025-02-28"
    assert next_year(date(2024, 2, 29)) == date(2025, 2, 28)
    # A source on the default start date gets its new one written out.
    data = yaml.safe_load(shift_campaign_text("name: Old\nsteps: []\n", "new-one", "New", None))
    assert data["start_date"] == "2026-11-01"


def _campaign(**fields: object) -> Campaign:
    raw = yaml.safe_load(DEFAULT_CAMPAIGN_FILE.read_text(encoding="utf-8"))
    raw.update(fields)
    return Campaign.model_validate(raw)


def test_signups_close_is_optional_parsed_and_checked() -> None:
    assert load_campaign().signups_close is None
    assert _campaign(signups_close="2025-12-24").signups_close == date(2025, 12, 24)
    with pytest.raises(ValueError, match="signups_close 2025-10-01 is before start_date"):
        _campaign(signups_close="2025-10-01")
    with pytest.raises(ValueError, match="signups_close"):
        _campaign(signups_close="Christmas Eve")
    assert date_problems(_campaign()) == []
    assert date_problems(_campaign(start_date="1 Nov")) == [
        "start_date '1 Nov' is not a date (YYYY-MM-DD)"
    ]


def test_settings_run_the_default_campaign_of_the_campaigns_dir(tmp_path: Path) -> None:
    _copy_default(tmp_path, "christmas-2025")
    other = _copy_default(tmp_path, "spring-2026")
    file = other / "campaign.yaml"
    file.write_text(file.read_text().replace("slug: christmas-2025", "slug: spring-2026"))

    default = Settings.of(campaigns_dir=tmp_path).campaign()
    assert default.slug == "christmas-2025"
    assert default.templates_dir == (tmp_path / "christmas-2025" / "templates").resolve()
    chosen = Settings.from_env(
        {"XMAS_CAMPAIGNS_DIR": str(tmp_path), "XMAS_DEFAULT_CAMPAIGN": "spring-2026"}
    ).campaign()
    assert chosen.slug == "spring-2026"
    assert chosen.templates_dir == (other / "templates").resolve()
    # XMAS_CAMPAIGN_FILE still wins; its templates are the folder beside it.
    loose = tmp_path / "elsewhere" / "any-name.yaml"
    loose.parent.mkdir()
    loose.write_text(file.read_text())
    named = Settings.from_env(
        {"XMAS_CAMPAIGNS_DIR": str(tmp_path), "XMAS_CAMPAIGN_FILE": str(loose)}
    )
    assert named.campaign_path == loose
    assert named.campaign().templates_dir == (loose.parent / "templates").resolve()
    assert Settings.of().campaign().slug == "christmas-2025"  # the shipped default


def test_a_bad_default_campaign_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="XMAS_DEFAULT_CAMPAIGN: invalid campaign slug"):
        Settings.from_env({"XMAS_DEFAULT_CAMPAIGN": "../etc"})
    with pytest.raises(CampaignFolderError, match="no campaign.yaml"):
        Settings.from_env({"XMAS_DEFAULT_CAMPAIGN": "easter-2027"}).campaign()


def test_settings_campaigns_load_every_folder_and_keep_the_broken_ones(tmp_path: Path) -> None:
    _copy_default(tmp_path, "christmas-2025")
    other = _copy_default(tmp_path, "spring-2026")
    file = other / "campaign.yaml"
    file.write_text(file.read_text().replace("slug: christmas-2025", "slug: spring-2026"))
    broken = tmp_path / "easter-2026"
    broken.mkdir()
    (broken / "campaign.yaml").write_text("slug: easter-2026\nsteps: [\n")

    settings = Settings.of(
        campaigns_dir=tmp_path, testing_mode=True, allowed_link_hosts="links.example.com"
    )
    found = settings.campaigns()
    assert list(found.loaded) == ["christmas-2025", "spring-2026"]
    assert found.default_slug == "christmas-2025"
    assert found.default == settings.campaign()  # the testing preset and the link hosts
    assert found.earliest_start() == "2025-11-01"
    [bad] = found.broken.values()
    assert bad.slug == "easter-2026" and bad.file == str(broken / "campaign.yaml")
    assert "not valid YAML" in bad.reason
    # The set is read-only: every definition built from it shares it.
    with pytest.raises(TypeError):
        found.loaded["x"] = found.loaded["christmas-2025"]  # type: ignore[index]

    # XMAS_CAMPAIGN_FILE: that campaign alone, the default.
    alone = Settings.of(campaigns_dir=tmp_path, campaign_file=str(file)).campaigns()
    assert list(alone.loaded) == ["spring-2026"] and alone.default_slug == "spring-2026"
    assert not alone.broken
