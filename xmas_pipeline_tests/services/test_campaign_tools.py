"""`xmas-pipeline campaign list | new | check`, called in-process on a campaigns directory
of the test's own (XMAS_CAMPAIGNS_DIR)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from xmas_pipeline.cli import main
from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE

SHIPPED = DEFAULT_CAMPAIGN_FILE.parent.parent


@pytest.fixture
def campaigns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "campaigns"
    shutil.copytree(SHIPPED / "christmas-2025", directory / "christmas-2025")
    monkeypatch.setenv("XMAS_CAMPAIGNS_DIR", str(directory))
    for name in ("XMAS_DEFAULT_CAMPAIGN", "XMAS_CAMPAIGN_FILE", "XMAS_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    return directory


def test_list_shows_each_campaign_and_why_a_broken_one_is(
    campaigns: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = campaigns / "christmas-2025" / "campaign.yaml"
    file.write_text(
        file.read_text().replace("min_gap: 20h", 'min_gap: 20h\nsignups_close: "2025-12-24"')
    )
    (campaigns / "broken").mkdir()
    (campaigns / "broken" / "campaign.yaml").write_text("name: Broken\nsteps: 3\n")

    assert main(["campaign", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("broken\tbroken: ")
    assert f"{campaigns / 'broken' / 'campaign.yaml'}: steps: " in lines[0]
    assert lines[1] == (
        "christmas-2025 (default)\tChristmas 2025\tstarts 2025-11-01\tsignups close 2025-12-24\tok"
    )


def test_new_copies_the_cadence_and_templates_with_fresh_dates(
    campaigns: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["campaign", "new", "easter-2026", "--from", "christmas-2025", "--name", "Easter 2026"]
        + ["--start", "2026-03-20"]
    )
    assert code == 0, capsys.readouterr().err
    assert "made campaign easter-2026 (Easter 2026)" in capsys.readouterr().out
    source, made = campaigns / "christmas-2025", campaigns / "easter-2026"
    old = yaml.safe_load((source / "campaign.yaml").read_text())
    new = yaml.safe_load((made / "campaign.yaml").read_text())
    assert (new["slug"], new["name"], new["start_date"]) == (
        "easter-2026",
        "Easter 2026",
        "2026-03-20",
    )
    assert new["steps"] == old["steps"] and new["reminders"] == old["reminders"]
    assert sorted(p.name for p in (made / "templates").iterdir()) == sorted(
        p.name for p in (source / "templates").iterdir()
    )
    assert (made / "templates" / "email-1.html.j2").read_bytes() == (
        source / "templates" / "email-1.html.j2"
    ).read_bytes()
    # Without --start and --name: a year after the source's, a name from the slug.
    assert main(["campaign", "new", "christmas-2026", "--from", "christmas-2025"]) == 0
    later = yaml.safe_load((campaigns / "christmas-2026" / "campaign.yaml").read_text())
    assert (later["name"], later["start_date"]) == ("Christmas 2026", "2026-11-01")
    assert sorted(p.name for p in campaigns.iterdir()) == [
        "christmas-2025",
        "christmas-2026",
        "easter-2026",
    ]  # nothing half-made left behind


def test_new_refuses_an_existing_or_invalid_slug_and_a_missing_source(
    campaigns: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (campaigns / "christmas-2025" / "campaign.yaml").read_text()
    assert main(["campaign", "new", "christmas-2025", "--from", "christmas-2025"]) == 2
    assert "campaign 'christmas-2025' already exists" in capsys.readouterr().err
    assert (campaigns / "christmas-2025" / "campaign.yaml").read_text() == before
    assert main(["campaign", "new", "Easter_26", "--from", "christmas-2025"]) == 2
    assert "invalid campaign slug 'Easter_26'" in capsys.readouterr().err
    assert main(["campaign", "new", "easter-2026", "--from", "no-such"]) == 2
    assert "no campaign.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["campaign", "new", "easter-2026", "--from", "christmas-2025", "--start", "soon"])
    assert exited.value.code == 2
    assert sorted(p.name for p in campaigns.iterdir()) == ["christmas-2025"]


def test_check_passes_for_both_shipped_campaigns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("XMAS_CAMPAIGNS_DIR", raising=False)
    monkeypatch.delenv("XMAS_PUBLIC_URL", raising=False)
    assert main(["campaign", "check"]) == 0
    out = capsys.readouterr().out
    assert "christmas-2025: ok" in out and "christmas-2026: ok" in out
    assert "2 of 2 campaigns pass" in out
    assert main(["campaign", "check", "christmas-2026"]) == 0


def test_check_fails_naming_the_file_and_line(
    campaigns: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    templates = campaigns / "christmas-2025" / "templates"
    email_3 = templates / "email-3.html.j2"
    lines = email_3.read_text().splitlines()
    body = lines.index("---") + 1  # the body's first line, 1-based: lines[body]
    lines[body + 3] += "{% if %}"
    email_3.write_text("\n".join(lines) + "\n")
    email_4 = templates / "email-4.html.j2"
    lines = email_4.read_text().splitlines()
    lines[-2] += '<a href="https://tracker.example/p">x</a>'
    email_4.write_text("\n".join(lines) + "\n")
    critical = templates / "email-2.critical.html.j2"  # a variant: its own file is named
    critical.write_text(critical.read_text().replace("preheader:", "x-preheader:", 1))
    reminder = templates / "reminder-1.html.j2"
    reminder.write_text(reminder.read_text().replace("{{ name }}", "{{ nmae }}", 1))
    nmae_line = next(
        i + 1 for i, line in enumerate(reminder.read_text().splitlines()) if "nmae" in line
    )

    assert main(["campaign", "check"]) == 1
    out = capsys.readouterr().out
    assert "christmas-2025: 10 problems" in out
    assert f"{critical}: email-2 [CRITICAL]: no preheader" in out
    assert f"{email_3}:{body + 4}: email-3 [CRITICAL]: email-3 html: " in out
    assert f"{email_4}:{len(lines) - 1}: email-4 [URGENT]: " in out
    assert "points at tracker.example" in out
    assert f"{reminder}:{nmae_line}: reminder-1 [OPTIMIZE]: reminder-1: 'nmae' is undefined" in out
    assert "0 of 1 campaigns pass" in out


def test_check_reports_a_broken_campaign_file_and_an_unknown_slug(
    campaigns: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = campaigns / "christmas-2025" / "campaign.yaml"
    file.write_text(file.read_text().replace("template: email-2,", "template: email-99,"))
    shutil.copytree(SHIPPED / "christmas-2026", campaigns / "christmas-2026")
    assert main(["campaign", "check"]) == 1
    out = capsys.readouterr().out
    assert f"{file}: email-99 [CRITICAL]: no template named 'email-99'" in out
    assert "christmas-2026: ok" in out and "1 of 2 campaigns pass" in out
    assert main(["campaign", "check", "christmas-2026"]) == 0
    assert main(["campaign", "check", "easter-2030"]) == 2
    assert "no campaign 'easter-2030'" in capsys.readouterr().err
