"""`modelreg ui` in a real browser (Debian's chromium, driven by selenium through
chromedriver): a person's path through a real registry with pushed, promoted and
tampered repositories, and a description that tries to run script.

MODELREG_UI_SCREENSHOTS=DIR keeps screenshots of the pages (docs/ui-*.png come from it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.processes import ServiceUnavailable
from helpers.registry import run_registry
from helpers.skips import service_or_skip, unavailable
from helpers.ui_scene import BIG_FILE, Scene, UiProcess, build_scene

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def scene_and_ui(engines_tmp: Path, keys: Path) -> Iterator[tuple[Scene, UiProcess]]:
    with service_or_skip("registry", run_registry(engines_tmp / "ui-browser-registry")) as registry:
        home = engines_tmp / "ui-browser-home"
        scene = build_scene(registry.host, home, keys, engines_tmp / "ui-browser-models")
        server = UiProcess(home, scene.host, "--policy", str(scene.policy))
        yield scene, server
        code, err = server.interrupt()
        assert code == 0, err


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            unavailable(ServiceUnavailable(f"{binary} is not installed"), "chromium")
    profile = tempfile.mkdtemp(prefix="mr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,1100",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver: Any, name: str) -> None:
    directory = os.environ.get("MODELREG_UI_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(int(height) + 40, 700), 2400))
        driver.save_screenshot(str(Path(directory) / f"ui-{name}.png"))
        driver.set_window_size(1280, 1100)


def _goes_to_a_new_page(driver: Any, action: Any) -> None:
    """``action()`` (a click, a submit), then wait until the old page is gone: a form's
    submit() returns before the next page is there."""
    old = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 60).until(expected_conditions.staleness_of(old))


def _no_script_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__xss === undefined")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def test_a_person_browses_versions_stages_a_version_and_a_diff(
    browser: Any, scene_and_ui: tuple[Scene, UiProcess]
) -> None:
    scene, server = scene_and_ui
    browser.get(server.url)
    assert browser.title.startswith("repositories")
    rows = {
        row.find_element(By.CSS_SELECTOR, "a.repo").text: row
        for row in browser.find_elements(By.CSS_SELECTOR, "#repositories tbody tr")
    }
    assert set(rows) == {scene.fraud, scene.tampered}
    assert "production → v3 ✓" in rows[scene.fraud].text
    assert "production ✗" in rows[scene.tampered].text
    _shot(browser, "home")

    _goes_to_a_new_page(browser, rows[scene.fraud].find_element(By.CSS_SELECTOR, "a.repo").click)
    assert browser.find_element(By.TAG_NAME, "h1").text == scene.fraud
    versions = browser.find_elements(By.CSS_SELECTOR, "#version-table tbody tr[data-version]")
    assert [v.get_attribute("data-version") for v in versions] == ["4", "3", "2", "1"]
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#version-table th")]
    assert "auc" in headers and "loss" in headers
    stages = {
        row.get_attribute("data-stage"): row.text
        for row in browser.find_elements(By.CSS_SELECTOR, "#stages tr.stage-row")
    }
    assert "v3" in stages["production"] and "verified" in stages["production"]
    assert "v2" in stages["staging"] and "alice" in stages["staging"]
    waiting = browser.find_element(By.CSS_SELECTOR, '#pending tr.pending-row[data-stage="release"]')
    cells = [cell.text for cell in waiting.find_elements(By.TAG_NAME, "td")]
    assert cells[1:4] == ["promote: ∅ → v1", "alice", "1 of 2"]
    v1 = scene.digests[scene.fraud][0]
    assert cells[5] == f"modelreg approve {scene.fraud}@{v1} --to release --key YOUR.key"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#charts svg")) == 3
    _no_script_ran(browser)  # a metric name carries an <img onerror>
    _shot(browser, "repository")

    # sort by a metric, then filter with the CLI's --where language
    _goes_to_a_new_page(browser, browser.find_element(By.LINK_TEXT, "auc").click)
    order = browser.find_elements(By.CSS_SELECTOR, "#version-table tbody tr[data-version]")
    assert [v.get_attribute("data-version") for v in order] == ["4", "2", "3", "1"]
    box = browser.find_element(By.ID, "where")
    box.send_keys("metrics.auc>=0.93")
    _goes_to_a_new_page(browser, box.submit)
    shown = browser.find_elements(By.CSS_SELECTOR, "#version-table tbody tr[data-version]")
    assert [v.get_attribute("data-version") for v in shown] == ["4", "2"]

    # a version: the XSS description is text, and nothing ran
    browser.get(server.url + f"repo?name={scene.fraud}")
    _goes_to_a_new_page(
        browser, browser.find_element(By.CSS_SELECTOR, 'tr[data-version="3"] a.version').click
    )
    assert browser.find_element(By.TAG_NAME, "h1").text == f"{scene.fraud} v3"
    description = browser.find_element(By.ID, "description").text
    assert description.startswith("<script>window.__xss = 1") and "onerror=" in description
    _no_script_ran(browser)
    assert browser.find_elements(By.CSS_SELECTOR, "#description script, #description img") == []
    use = browser.find_element(By.ID, "use").text
    assert f"docker pull {scene.fraud}@{scene.digests[scene.fraud][2]}" in use
    assert "weights.bin" in browser.find_element(By.ID, "files").text
    big = browser.find_element(By.XPATH, f'//section[@id="files"]//tr[td[1]="{BIG_FILE}"]')
    assert [cell.text for cell in big.find_elements(By.TAG_NAME, "td")][1::2] == [
        "9.0 MiB",
        "own layer",
    ]
    _shot(browser, "version")

    # a diff picked on the repository page
    _goes_to_a_new_page(browser, browser.find_element(By.LINK_TEXT, scene.fraud).click)
    Select(browser.find_element(By.NAME, "a")).select_by_value("1")
    Select(browser.find_element(By.NAME, "b")).select_by_value("4")
    _goes_to_a_new_page(browser, browser.find_element(By.ID, "compare").click)
    params = browser.find_element(By.ID, "diff-params").text
    assert "lr" in params and "0.01" in params and "0.04" in params
    assert "weights.bin" in browser.find_element(By.ID, "diff-files").text
    _shot(browser, "diff")


def test_the_tampered_stage_is_refused_in_the_browser(
    browser: Any, scene_and_ui: tuple[Scene, UiProcess]
) -> None:
    scene, server = scene_and_ui
    browser.get(server.url)
    _goes_to_a_new_page(browser, browser.find_element(By.LINK_TEXT, scene.tampered).click)
    row = browser.find_element(By.CSS_SELECTOR, '#stages tr[data-stage="production"]')
    assert "refused" in row.get_attribute("class")
    assert "moved without a signed promotion" in row.text
    assert "verified" not in row.text
    cell = browser.find_element(By.CSS_SELECTOR, '#version-table tr[data-version="2"]').text
    assert "production: tag not verified" in cell


def test_csp_blocks_script_even_if_markup_got_through(
    browser: Any, scene_and_ui: tuple[Scene, UiProcess]
) -> None:
    """Defence in depth: if a template ever forgot to escape, the CSP still stops it."""
    _, server = scene_and_ui
    browser.get(server.url)
    ran = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        window.__xss = undefined;
        const s = document.createElement('script');
        s.textContent = 'window.__xss = 9';
        document.body.appendChild(s);
        const img = document.createElement('img');
        img.setAttribute('onerror', 'window.__xss = 10');
        img.src = 'data:,broken';
        document.body.appendChild(img);
        setTimeout(() => done(window.__xss === undefined ? null : window.__xss), 500);
        """
    )
    assert ran is None
    _no_script_ran(browser)
