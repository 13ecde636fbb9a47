"""The connect pages in a real browser (headless Chromium via Selenium).

Usage: python3 tests/scripts/browser_connect.py URL DATA_DIR
against a fresh `airlock dev --data DATA_DIR` listening at URL; the `airlock`
binary must be on PATH or in $AIRLOCK. Needs `apt-get install chromium
chromium-driver` and `pip install selenium`.

alice calls `list_events` and gets a URL elicitation; the browser opens the
link, logs in at the dev issuer by clicking "alice", picks alice's calendar
account and clicks Allow, and must land on "Account connected"; the retry
shows alice's calendar. Then bob's link opened by a browser that logs in as
alice must show "This link is for someone else", and the link, once used,
"This link no longer works". The pages must render with no console errors other than
HTTP statuses (their CSP allows no scripts and no external resources).
"""

import json
import os

os.environ.setdefault("SE_AVOID_STATS", "true")
import subprocess
import sys
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, DATA = sys.argv[1], sys.argv[2]
AIRLOCK = os.environ.get("AIRLOCK", "airlock")


def call(user):
    token = subprocess.check_output(
        [AIRLOCK, "token", "--tenant", "acme", "--user", user, "--data", DATA], text=True
    ).strip()
    body = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "list_events", "arguments": {},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}}},
    }).encode()
    request = urllib.request.Request(f"{BASE}/mcp/acme", data=body, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json",
        "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call", "mcp-name": "list_events"})
    text = urllib.request.urlopen(request).read().decode()
    data = [line[5:] for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[0] if data else text)["result"]


def link(result):
    assert result.get("resultType") == "input_required", result
    (request,) = result["inputRequests"].values()
    return request["params"]["url"]


def browser():
    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if os.path.exists("/usr/bin/chromium"):
        options.binary_location = "/usr/bin/chromium"
    service = webdriver.ChromeService("/usr/bin/chromedriver") if os.path.exists("/usr/bin/chromedriver") else None
    return webdriver.Chrome(options=options, service=service)


def connect(url, login_as, account):
    driver = browser()
    try:
        driver.get(url)
        # The dev issuer's login page (unless the link is refused at once):
        # one button per demo user.
        buttons = driver.find_elements(By.CSS_SELECTOR, f'button[name="user"][value="{login_as}"]')
        if buttons:
            buttons[0].click()
            WebDriverWait(driver, 10).until(EC.staleness_of(buttons[0]))
        if "Demo Calendar" in driver.title:
            driver.find_element(By.CSS_SELECTOR, f'input[name="account"][value="{account}"]').click()
            allow = driver.find_element(By.CSS_SELECTOR, 'button[value="allow"]')
            allow.click()
            WebDriverWait(driver, 10).until(EC.staleness_of(allow))
        heading = WebDriverWait(driver, 10).until(
            EC.presence_of_element_located((By.TAG_NAME, "h1"))
        ).text
        errors = [e for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert not errors, errors
        return heading, driver.current_url
    finally:
        driver.quit()


alice_link = link(call("alice"))
heading, at = connect(alice_link, "alice", "alice")
assert heading == "Account connected", (heading, at)
result = call("alice")
assert result["structuredContent"]["owner"] == "alice", result
print("alice connected in the browser:", result["content"][0]["text"])

bob_link = link(call("bob"))
heading, _ = connect(bob_link, "alice", "alice")
assert heading == "This link is for someone else", heading
print("bob's link refused alice:", heading)
heading, _ = connect(alice_link, "alice", "alice")
assert heading == "This link no longer works", heading
print("a used link:", heading)
