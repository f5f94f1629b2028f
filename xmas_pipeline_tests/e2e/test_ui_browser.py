"""The Dagster UI as a marketer opens it: headless Chromium against a real `xmas-pipeline dev`.

Needs Debian's `chromium` and `chromium-driver` (`make test` installs them when it runs as
root). Without them the tests are skipped with the reason; under `XMAS_STRICT_SKIPS` (as
CI runs) they fail instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from xmas_pipeline_tests.support.dagster_dev import DevServer, running_dev
from xmas_pipeline_tests.support.pipeline_env import DEFAULT_PREFIX, default_name
from xmas_pipeline_tests.support.requirements import missing

pytestmark = pytest.mark.slow

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
    require_chromium()  # before the server: it takes a while to start
    # One server for every check in this module.
    with running_dev(tmp_path_factory.mktemp("ui") / "home", XMAS_TESTING_MODE="true") as server:
        yield server


@pytest.fixture(scope="module")
def browser(dev: DevServer) -> Iterator[webdriver.Chrome]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        driver = new_browser(Path(profile))
        try:
            yield driver
        finally:
            driver.quit()


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
