"""`xmas-pipeline dev` (what `make dev` runs) for real, one server for the module: the UI
comes up with the assets, the sensor and the schedule running; a marketer's pages render
in headless Chromium; three signups dropped in the inbox become three welcome emails in
the outbox within two minutes (testing mode, a send every minute); and one Ctrl-C stops
all of it.

The browser tests need Debian's `chromium` and `chromium-driver` (`make test` installs
them when it runs as root). Without them they are skipped with the reason; under
`XMAS_STRICT_SKIPS` (as CI runs) they fail instead.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline_tests.support.dagster_dev import (
    DevServer,
    processes_with_marker,
    running_dev,
    wait_for,
)
from xmas_pipeline_tests.support.pipeline_env import DEFAULT_PREFIX, default_name, signup
from xmas_pipeline_tests.support.requirements import missing

pytestmark = pytest.mark.slow

QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    sensors { name sensorState { status } }
    schedules { name cronSchedule scheduleState { status } }
    assetNodes { assetKey { path } groupName }
} } } }
"""
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
]
# The catalog lists assets by key, alphabetically, and draws only the rows in view: the
# first global assets by name, then the first campaign's (their prefixed names shortened,
# so they are found by their group and description). The lineage page shows every group.
ASSETS = ["booking_state", "bookings", "campaign_folders"]
GROUPS = ("ingestion", "sequences", "campaigns", "christmas_2025", "christmas_2026")


def require_chromium() -> None:
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if absent:
        missing(
            f"{', '.join(absent)} not found",
            "install Debian's chromium and chromium-driver "
            "(sudo apt-get install -y chromium chromium-driver, or run make test as root)",
        )


def new_browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    # One server for every check in this module (each start costs half a minute).
    home = tmp_path_factory.mktemp("dev") / "home"
    with running_dev(home, XMAS_TESTING_MODE="true", XMAS_SEND_CRON="* * * * *") as server:
        yield server


@pytest.fixture(scope="module")
def browser(dev: DevServer) -> Iterator[webdriver.Chrome]:
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        driver = new_browser(Path(profile))
        try:
            yield driver
        finally:
            driver.quit()


def test_the_ui_lists_the_assets_sensors_and_schedules(dev: DevServer) -> None:
    repo = dev.graphql(QUERY)["repositoriesOrError"]["nodes"][0]
    assets = {"/".join(a["assetKey"]["path"]): a["groupName"] for a in repo["assetNodes"]}
    assert assets["signups"] == "ingestion"
    assert assets["email_sequences"] == "sequences"
    assert assets[f"{DEFAULT_PREFIX}/deliveries"] == DEFAULT_PREFIX
    assert assets["christmas_2026/deliveries"] == "christmas_2026"  # every campaign
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert sensors["signups_sensor"] == "RUNNING"
    assert schedules[default_name("send_schedule")] == "RUNNING"


def page_text(browser: webdriver.Chrome, dev: DevServer, path: str, expected: list[str]) -> str:
    """Open `path` and wait until the rendered page shows every expected string."""
    browser.get(f"{dev.ui_url}{path}")

    def shows_all(driver: webdriver.Chrome) -> str | bool:
        text = driver.find_element(By.TAG_NAME, "body").text
        return text if all(name in text for name in expected) else False

    try:
        return WebDriverWait(browser, 60, poll_frequency=0.5).until(shows_all)
    except TimeoutException:
        text = browser.find_element(By.TAG_NAME, "body").text
        missing = [name for name in expected if name not in text]
        pytest.fail(f"{path} never showed {missing}; it showed:\n{text[:2000]}")


def test_the_catalog_lists_every_asset_with_its_group(
    browser: webdriver.Chrome, dev: DevServer
) -> None:
    text = page_text(browser, dev, "/assets", [*ASSETS, *GROUPS[:4]])
    assert "The campaign funnel" in text  # descriptions are shown, a campaign's too


def test_the_lineage_page_shows_the_groups(browser: webdriver.Chrome, dev: DevServer) -> None:
    page_text(browser, dev, "/asset-groups", list(GROUPS))


def test_the_automation_page_shows_the_sensor_and_the_schedule(
    browser: webdriver.Chrome, dev: DevServer
) -> None:
    page_text(browser, dev, "/automation", ["signups_sensor", default_name("send_schedule")])


def test_the_jobs_page_offers_the_send_and_resend_jobs(
    browser: webdriver.Chrome, dev: DevServer
) -> None:
    page_text(
        browser,
        dev,
        "/jobs",
        [default_name("send_due_emails"), default_name("resend_contact"), "ingest_signups"],
    )


def test_an_asset_page_explains_the_asset(browser: webdriver.Chrome, dev: DevServer) -> None:
    page_text(browser, dev, f"/assets/{DEFAULT_PREFIX}/deliveries", ["deliveries", "force: true"])


def test_signups_in_the_inbox_become_welcome_emails(dev: DevServer) -> None:
    inbox = Inbox(dev.home / "inbox")
    for email, red, orange in (("a@x.com", 2, 0), ("b@x.com", 1, 0), ("c@x.com", 0, 0)):
        inbox.write("signups", json.dumps(signup(email, red=red, orange=orange)).encode())
    outbox = dev.home / "outbox"

    def welcomes() -> list[str]:
        if not outbox.exists():
            return []
        return sorted(p.name for p in outbox.glob("*__email-1.eml"))

    arrived = wait_for(lambda: len(welcomes()) == 3, timeout=150, interval=2)
    assert arrived, f"welcome emails: {welcomes()}\n{dev.log_tail()}"


def test_one_ctrl_c_stops_everything(dev: DevServer) -> None:
    # Last: the intake and Dagster (webserver and daemon) stop together.
    assert dev.interrupt(), f"still running after Ctrl-C\n{dev.log_tail()}"
    assert not processes_with_marker(dev.marker)
