#!/usr/bin/env python3
"""The page at / in a real browser (headless Chromium, Debian's package, driven by Selenium):
it says what the server is with JavaScript off, and with JavaScript finds a demo customer by
email with a pasted key, which stays out of the URL. Every resource it loads comes from the
server itself. Takes the screenshots in docs/screenshots/ when asked.

  page_test.py BASE_URL KEY [--screenshots DIR]
"""
import argparse
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

EMAIL = "marie.dubois@example.be"


def browser(width, height, javascript=True):
    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"]:
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


PASSED = []


def check(condition, message):
    if not condition:
        print(f"browser: {len(PASSED)} passed, 1 failed")
        raise SystemExit(f"FAILED: {message}")
    PASSED.append(message)
    print(f"ok: {message}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("key")
    parser.add_argument("--screenshots")
    args = parser.parse_args()

    # 1. No JavaScript: the server-rendered facts are there.
    plain = browser(1280, 900, javascript=False)
    try:
        plain.get(args.base + "/")
        text = plain.find_element(By.TAG_NAME, "body").text
        check("clientele" in text, "the page names the server without JavaScript")
        check(plain.find_element(By.ID, "health").text == "ok", "health shows ok")
        check(plain.find_element(By.ID, "count").text.isdigit(), "the customer count shows")
        check("needs JavaScript" in text, "the page says searching needs JavaScript")
    finally:
        plain.quit()

    # 2. JavaScript: paste the key, search by email, find the row.
    for width, height, name in [(1280, 900, "desktop"), (360, 800, "phone")]:
        page = browser(max(width, 800), height)
        try:
            # A real phone's viewport (a window cannot be made narrower than 500 px).
            page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1,
                "mobile": width < 600})
            page.get(args.base + "/")
            wait = WebDriverWait(page, 15)
            wait.until(ready.visibility_of_element_located((By.ID, "search-form")))
            page.find_element(By.ID, "key").send_keys(args.key)
            page.find_element(By.ID, "query").send_keys(EMAIL)
            page.find_element(By.CSS_SELECTOR, "#search-form button").click()
            wait.until(ready.visibility_of_element_located((By.ID, "results")))
            rows = page.find_elements(By.CSS_SELECTOR, "#results tbody tr")
            check(len(rows) == 1 and EMAIL in rows[0].text, f"{name}: the customer's row is found")
            check(args.key not in page.current_url, f"{name}: the key is not in the URL")
            stored = page.execute_script("return sessionStorage.getItem('clientele.key')")
            check(stored == args.key, f"{name}: the key is kept in the tab's sessionStorage")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#operations .op"))
            ops = len(page.find_elements(By.CSS_SELECTOR, "#operations .op"))
            check(ops >= 9, f"{name}: the API reference lists {ops} calls, each with a curl")
            origins = page.execute_script(
                "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
            check(all(o == args.base for o in origins), f"{name}: nothing loaded from elsewhere")
            inner = page.execute_script("return window.innerWidth")
            check(inner == width, f"{name}: the viewport is {width} px wide")
            overflow = page.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth + 1")
            check(not overflow, f"{name}: the page fits {width} px without sideways scrolling")
            if args.screenshots:
                page.execute_script("window.scrollTo(0, 0)")
                page.save_screenshot(f"{args.screenshots}/page-{name}.png")
        finally:
            page.quit()
    print(f"browser: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
