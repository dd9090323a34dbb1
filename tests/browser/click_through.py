"""Clicks through `task-list-bot setup`'s page in headless Chromium.

Usage: click_through.py PAGE_URL [SCREENSHOT_DIR]

Opens the page (the URL `setup` printed, token included), checks what it
says, clicks "Register GitHub App" (the form posts the manifest to the fake
GitHub, which redirects back to the page with a code), and waits for the
page to say the App is registered. Prints one `ok - …` / `not ok - …` line
per check; exits non-zero on the first failure.
"""

import os
import shutil
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as when
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PATIENCE = 20


def fail(text):
    print(f"not ok - {text}")
    sys.exit(1)


def ok(text):
    print(f"ok - {text}")


def main():
    page_url = sys.argv[1]
    screenshots = sys.argv[2] if len(sys.argv) > 2 else None
    profile = tempfile.mkdtemp(prefix="tlb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The machine's network is closed: nothing may phone home.
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1000,900",
    ]:
        options.add_argument(flag)
    # An explicit driver path: Selenium must not look for (or fetch) one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(PATIENCE)
        driver.get(page_url)
        heading = driver.find_element(By.TAG_NAME, "h1").text
        if heading != "Register task-list-bot":
            fail(f"the page's heading is {heading!r}")
        ok("the setup page opens with its token")
        text = driver.find_element(By.TAG_NAME, "main").text
        for expected in ["checks: write", ".github/task-list-completed.yml", "merge_group"]:
            if expected not in text:
                fail(f"the page does not mention {expected!r}")
        ok("the page lists the permissions, the single file and the events")
        if screenshots:
            driver.save_screenshot(os.path.join(screenshots, "setup-page.png"))

        driver.find_element(By.ID, "register").click()
        WebDriverWait(driver, PATIENCE).until(
            when.presence_of_element_located((By.ID, "registered"))
        )
        ok("the button posts the manifest to GitHub, which sends the browser back")
        app_id = driver.find_element(By.ID, "app-id").text
        install = driver.find_element(By.ID, "install").get_attribute("href")
        if not install.endswith("/apps/task-list-bot/installations/new"):
            fail(f"the install link is {install!r}")
        ok(f"the page shows App ID {app_id} and the install link")
        body = driver.page_source
        if "PRIVATE KEY" in body:
            fail("the page shows the private key")
        ok("no secret on the page")
        if screenshots:
            driver.save_screenshot(os.path.join(screenshots, "registered.png"))
        print(f"# app id {app_id}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
