"""The gateway's ``/api/docs/`` in a real browser: headless Chromium (Debian's ``chromium``)
driven by Selenium through Debian's ``chromedriver`` (``chromium-driver``, the same version by
construction; nothing is downloaded). Selenium over Playwright: a pure-Python wheel talking
the W3C WebDriver protocol to that driver, where Playwright ships a Node.js driver of its own
and pins the Chromium revisions it supports.

The browser resolves no host name at all (``--host-resolver-rules``): the page can only reach
the gateway, which the tests address by IP. Every request the page made is read back from
Chrome's network log, and every Content-Security-Policy violation from the page itself.

Without Chromium the tests skip, saying so; under ``CI=true`` they fail instead (.ci/run
installs it).
"""

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 20.0
# Collected from the first script the page runs (before Swagger UI's own).
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def _browser_binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    binaries = _browser_binaries()
    if binaries is None:
        reason = "Chromium and chromedriver not found (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI runs the docs page in a real browser")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        # No name resolves: anything but the gateway (an IP address) is unreachable.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(binaries[1]))
    try:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS}
        )
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait_for(driver: WebDriver, what: str, condition: Any) -> Any:
    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        logs = driver.get_log("browser")
        raise AssertionError(f"{what} not seen within {WAIT:g}s; console: {logs}") from None


def operation(driver: WebDriver, method: str, path: str) -> WebElement:
    """An operation block of Swagger UI, opened."""
    block: WebElement = wait_for(
        driver,
        f"{method} {path}",
        lambda d: d.find_element(
            By.XPATH,
            f"//div[contains(@class, 'opblock-{method}')][.//*[@data-path='{path}']]",
        ),
    )
    if "is-open" not in (block.get_attribute("class") or ""):
        block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    return block


def try_it_out(driver: WebDriver, block: WebElement) -> str:
    """Try it out, Execute, and the status code the page shows."""
    wait_for(driver, "Try it out", lambda _: block.find_element(By.CSS_SELECTOR, ".try-out__btn"))
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    wait_for(driver, "Execute", lambda _: block.find_element(By.CSS_SELECTOR, ".execute")).click()
    status: WebElement = wait_for(
        driver,
        "the response",
        lambda _: block.find_element(
            By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
        ),
    )
    return status.text.strip()


def open_docs(driver: WebDriver, running: Any) -> None:
    requested_urls(driver)  # forget earlier pages' requests
    driver.get(f"{running.url}/api/docs/")
    wait_for(driver, "the operations", lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))


def test_docs_page_renders_every_operation_from_the_gateway_alone(
    browser: WebDriver, running: Any, gateway: httpx.Client
) -> None:
    document = gateway.get("/api/openapi.json").json()
    documented = sum(
        1
        for item in document["paths"].values()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    )
    open_docs(browser, running)
    assert browser.title == "DentiaPro API"
    wait_for(
        browser,
        f"{documented} operations",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) == documented,
    )
    # A public operation, tried out from the page: the call goes to the gateway itself.
    assert try_it_out(browser, operation(browser, "get", "/api/auth/jwks/")) == "200"

    urls = requested_urls(browser)
    assert f"{running.url}/api/openapi.json" in urls
    assert f"{running.url}/api/auth/jwks/" in urls
    assert any(url.endswith("/swagger-ui-bundle.js") for url in urls)
    foreign = [u for u in urls if not u.startswith((f"{running.url}/", "data:"))]
    assert foreign == [], "the page asked for something other than the gateway"
    assert browser.execute_script("return window.cspViolations") == []


def test_try_it_out_with_a_bearer_token_lists_the_practices_cabinets(
    browser: WebDriver, running: Any, gateway: httpx.Client, api: Any
) -> None:
    schemes = gateway.get("/api/openapi.json").json()["components"].get("securitySchemes", {})
    bearer = [name for name, s in schemes.items() if s.get("scheme", "").lower() == "bearer"]
    if not bearer:
        pytest.skip("the services' documents declare no bearer security scheme yet")
    _, headers = api.tenant_admin(api.create_tenant())
    cabinet = f"Room {uuid.uuid4().hex[:8]}"
    created = gateway.post(
        "/api/cabinets/",
        json={
            "name": cabinet,
            "address": "1 Rue de la Paix",
            "contact_number": "+33 4 23 45 67 89",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    token = headers["Authorization"].removeprefix("Bearer ")

    open_docs(browser, running)
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    modal = wait_for(
        browser, "the Authorize dialog", lambda d: d.find_element(By.CSS_SELECTOR, ".modal-ux")
    )
    modal.find_element(By.CSS_SELECTOR, "input[type=text], input[type=password]").send_keys(token)
    modal.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
    wait_for(browser, "Logout", lambda _: modal.find_element(By.XPATH, ".//button[.='Logout']"))
    modal.find_element(By.CSS_SELECTOR, ".btn-done").click()

    block = operation(browser, "get", "/api/cabinets/")
    assert try_it_out(browser, block) == "200"
    body = block.find_element(
        By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description"
    )
    assert cabinet in body.text  # the practice's own cabinet: the token went with the call
    assert browser.execute_script("return window.cspViolations") == []
