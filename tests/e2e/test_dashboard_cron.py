"""The dashboard's cron view, in a real headless Chromium: a line paused and resumed with its button, run now, and a
range of its fire times backfilled with the form."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_dashboard import TOKEN, browser, page, shot
from tests.serving import ServedPoulpe
from tests.started import Started
from tests.target import Target

__all__ = ["browser", "page"]  # the dashboard's fixtures, shared; `proc` is this module's own


@pytest.fixture(scope="module")
def proc(module_served: Started[ServedPoulpe], target: Target) -> ServedPoulpe:
    cron = module_served.root / "cron.txt"
    cron.write_text(
        f"[paused=true] * * * * * * *  {target.url('/echo', key='dash-tick')}  GET\n"
        f"0 0 0 1 1 * 2090  {target.url('/echo', key='dash-year')}  GET\n"
    )
    return module_served("--cron", str(cron), env={"POULPE_TOKEN": TOKEN}, token=TOKEN)


def ticks(target: Target, key: str, since: float = 0.0) -> list[str]:
    return [c.job_id or "" for c in target.calls if c.query.get("key") == key and c.at > since]


def test_a_cron_line_is_resumed_paused_and_run_now_from_its_buttons(
    page: Page, client: httpx.Client, proc: ServedPoulpe, target: Target
) -> None:
    tick, year = (line["id"] for line in client.get("/cron").json()["lines"])
    row = page.locator(f'#cron tr[data-cron="{tick}"]')
    expect(row.locator("td.state")).to_have_text("paused")
    resumed = time.time()
    row.locator("button.resume").click()
    expect(row.locator("td.state")).to_have_text("running")
    expect(row.locator("button.pause")).to_be_visible()
    assert client.get("/cron").json()["lines"][0]["paused"] is False
    deadline = time.monotonic() + 5
    while not ticks(target, "dash-tick", resumed):
        assert time.monotonic() < deadline, "the resumed line did not fire"
        time.sleep(0.05)
    expect(row.locator("td").nth(6)).to_contain_text(f"cron:{tick}:")  # its last fire
    shot(page, "cron")
    row.locator("button.pause").click()
    expect(row.locator("td.state")).to_have_text("paused")
    paused = time.time()
    time.sleep(2)
    assert not ticks(target, "dash-tick", paused + 1), "the paused line fired"

    page.locator(f'#cron tr[data-cron="{year}"] button.run').click()
    deadline = time.monotonic() + 5
    while not ticks(target, "dash-year"):
        assert time.monotonic() < deadline, "run now did not fire the line"
        time.sleep(0.05)
    assert ticks(target, "dash-year")[0].startswith(f"cron:{year}:run:")


def test_a_range_is_backfilled_with_the_form_once(page: Page, client: httpx.Client, target: Target) -> None:
    tick = client.get("/cron").json()["lines"][0]["id"]
    end = int(time.time()) - 3600  # an hour ago: the line was not there yet
    local = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
    page.select_option("#backfill-line", tick)
    page.fill("#backfill-from", local(end - 4))
    page.fill("#backfill-to", local(end))
    page.click("#cron-backfill button[type=submit]")
    expect(page.locator("#backfill-result")).to_have_text("5 fire times, 5 new jobs")
    expected = {f"cron:{tick}:{t}" for t in range(end - 4, end + 1)}
    deadline = time.monotonic() + 5
    while not expected <= set(ticks(target, "dash-tick")):
        assert time.monotonic() < deadline, "the backfilled fires did not run"
        time.sleep(0.05)
    page.click("#cron-backfill button[type=submit]")
    expect(page.locator("#backfill-result")).to_have_text("5 fire times, 0 new jobs")
