"""An operator opens the dashboard in a real headless Chromium (Debian's package, driven by Playwright).

The page asks for the token once, shows the counts, follows new jobs without a reload, retries a dead job with
its button, and shows a hostile job name as text. Screenshots go to tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.helpers import accepted, eventually, result, state
from tests.serving import ServedPoulpe
from tests.started import Started
from tests.target import Target

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home on a machine with no network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "dash-s3cret"
HOSTILE = "http://127.0.0.1:9/<script>window.pwned=1</script>"
CRON = "0 0 0 1 1 * 2090   http://127.0.0.1:9/new-year   GET   a=1\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def proc(module_served: Started[ServedPoulpe]) -> ServedPoulpe:
    cron = module_served.root / "cron.txt"
    cron.write_text(CRON)
    flags = ("--workers", "2", "--max_retry", "0", "--cron", str(cron))
    return module_served(*flags, env={"POULPE_TOKEN": TOKEN}, token=TOKEN)


@pytest.fixture
def page(browser: Browser, proc: ServedPoulpe) -> Iterator[Page]:
    """The dashboard, logged in: it asked for the token, which the operator typed once."""
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{proc.url}/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", TOKEN)
    page.click("#login button")
    expect(page.locator("#login")).to_be_hidden()
    yield page
    outside = [url for url in requested if not url.startswith(f"{proc.url}/")]
    assert outside == [], "the dashboard must not reach outside poulpe"
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def test_the_page_loads_without_the_token_and_its_data_routes_need_it(proc: ServedPoulpe) -> None:
    page = httpx.get(f"{proc.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{proc.url}/dashboard.js").status_code == 200
    assert httpx.get(f"{proc.url}/sys_info").status_code == 401
    assert httpx.get(f"{proc.url}/cron").status_code == 401


def test_counts_and_a_new_job_appear_without_reload(page: Page, client: httpx.Client, fresh_target: Target) -> None:
    counts = client.get("/sys_info").json()["counts"]
    expect(page.locator("#count-succeeded .n")).to_have_text(str(counts["succeeded"]))
    expect(page.locator("#workers tbody tr")).to_have_count(2)
    expect(page.locator("#cron tbody tr")).to_contain_text("new-year")
    page.reload()  # the token is kept for the tab's session: asked once
    expect(page.locator("#count-queued .n")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()

    accepted(client, id="dash-new", method="GET", name=fresh_target.url("/echo"), meta={"order": 42})
    assert result(client, "dash-new")["status"] == "succeeded"
    row = page.locator('#jobs tr[data-id="dash-new"]')
    expect(row).to_be_visible()  # the page refreshes on its own
    expect(row).to_contain_text("succeeded")
    expect(page.locator("#count-succeeded .n")).to_have_text(str(counts["succeeded"] + 1))

    row.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-history tbody tr")).to_have_count(1)
    expect(page.locator("#detail-result")).to_contain_text('"status_code": 200')
    shot(page, "overview")


def test_a_dead_job_is_retried_with_its_button(page: Page, client: httpx.Client, fresh_target: Target) -> None:
    # fails once (dead at once: --max_retry 0), then succeeds when the operator retries it
    accepted(client, id="dash-dead", method="POST", name=fresh_target.url("/flaky/dash", fail=1))
    assert result(client, "dash-dead")["status"] == "dead"
    dead_row = page.locator('#dead tr[data-dead="dash-dead"]')
    expect(dead_row).to_be_visible()
    shot(page, "dead-letter")

    dead_row.locator("button.retry").click()
    expect(dead_row).to_have_count(0)
    assert result(client, "dash-dead")["status"] == "succeeded"
    assert client.get("/dead/dash-dead").status_code == 404


def test_a_dead_letter_is_deleted_after_a_second_click(page: Page, client: httpx.Client) -> None:
    accepted(client, id="dash-delete", method="GET", name="http://127.0.0.1:9/closed")
    assert result(client, "dash-delete")["status"] == "dead"
    dead_row = page.locator('#dead tr[data-dead="dash-delete"]')
    dead_row.locator("button.delete").click()
    expect(dead_row.locator("button.delete")).to_have_text("delete for good?")
    dead_row.locator("button.delete").click()
    expect(dead_row).to_have_count(0)
    assert client.get("/dead/dash-delete").status_code == 404


def test_a_hostile_job_name_is_shown_as_text_and_runs_nothing(page: Page, client: httpx.Client) -> None:
    meta = {"note": '<img src=x onerror="window.pwned=2">'}
    accepted(client, id="dash-xss", method="GET", name=HOSTILE, meta=meta)
    assert state(client, "dash-xss")["name"] == HOSTILE
    row = page.locator('#jobs tr[data-id="dash-xss"]')
    expect(row.locator("td").nth(2)).to_have_text(HOSTILE)
    row.click()
    expect(page.locator('#detail-fields dd[data-field="name"]')).to_have_text(HOSTILE)
    expect(page.locator('#detail-fields dd[data-field="meta"]')).to_have_text(json.dumps(meta, separators=(",", ":")))
    shot(page, "hostile-name")
    assert page.evaluate("window.pwned === undefined")
    assert page.evaluate("document.scripts.length") == 1  # dashboard.js, nothing injected
    assert page.locator("img").count() == 0


GREEN = (0x17, 0x80, 0x3D)  # the "done" line


def test_the_charts_draw_jobs_done_per_second_from_the_history(
    page: Page, client: httpx.Client, fresh_target: Target
) -> None:
    ids = [accepted(client, method="GET", name=fresh_target.url("/echo"))["id"] for _ in range(30)]
    assert all(result(client, job_id)["status"] == "succeeded" for job_id in ids)
    history = client.get("/history").json()
    assert history["fields"] == ["t", "done", "failed", "late_p50", "late_p99", "queued", "running"]
    done = history["fields"].index("done")
    # one point a second, each a rate over about one second: together they count the 30 jobs
    eventually(lambda: sum(row[done] for row in client.get("/history").json()["seconds"]) >= 29)
    # the page redraws on its own: the burst of 30 jobs shows as at least 2 done a second
    page.wait_for_function("() => Number(document.getElementById('chart-rate').dataset.peak) >= 2", timeout=15000)
    ARTIFACTS.mkdir(exist_ok=True)
    chart = page.locator("#chart-rate")
    chart.screenshot(path=str(ARTIFACTS / "dashboard-chart-rate.png"))
    green = page.evaluate(
        """([r, g, b]) => {
          const c = document.getElementById('chart-rate');
          const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < data.length; i += 4) {
            if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40) n++;
          }
          return n;
        }""",
        list(GREEN),
    )
    assert green > 20, "the done line is drawn"
    shot(page, "charts")
    page.check('input[name="range"][value="minutes"]')  # six hours: no minute has passed yet in this test
    expect(page.locator("#chart-rate")).to_have_attribute("data-points", "0")


def test_alerts_show_as_a_badge_and_a_list(page: Page, client: httpx.Client) -> None:
    accepted(client, id="dash-alert", method="GET", name="http://127.0.0.1:9/closed")
    assert result(client, "dash-alert")["status"] == "dead"
    row = page.locator('#alert-list tr[data-alert="dead"]', has_text="dash-alert")
    expect(row).to_be_visible()
    expect(page.locator("#alert-badge")).to_have_class(re.compile(r"\bon\b"))
    dead = client.get("/alerts").json()["counts"]["dead"]
    expect(page.locator("#alert-count")).to_have_text(re.compile(rf"^{dead}$|^{dead + 1}$"))
    shot(page, "alerts")


def test_a_jobs_windows_show_in_its_view(page: Page, client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/echo")
    window = {"deadline": 4102444800, "retry": {"max_duration": 90}, "delay": 3600}
    accepted(client, id="dash-windows", method="GET", name=url, unique={"key": "dash-report", "for": 600}, **window)
    accepted(client, id="dash-debounce", method="GET", name=url, debounce={"key": "dash-hook", "delay": 3600})
    page.locator('#jobs tr[data-id="dash-windows"]').click()
    expect(page.locator('#detail-fields dd[data-field="deadline"]')).to_contain_text("2100")
    expect(page.locator('#detail-fields dd[data-field="unique"]')).to_contain_text("dash-report until")
    expect(page.locator('#detail-fields dd[data-field="retry budget"]')).to_have_text("90 s after the first attempt")
    page.locator('#jobs tr[data-id="dash-debounce"]').click()
    expect(page.locator('#detail-fields dd[data-field="debounce"]')).to_have_text("dash-hook")
    expect(page.locator('#detail-fields dd[data-field="deadline"]')).to_have_count(0)
    client.delete("/jobs/dash-windows")
    client.delete("/jobs/dash-debounce")
