"""The dashboard's keys view, in a real headless Chromium: keys with their waiting and running jobs and limits, a
key paused and resumed with its button, and the whole deployment paused and resumed."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.helpers import accepted, result, state
from tests.e2e.test_dashboard import browser, page, proc, shot
from tests.target import Target

__all__ = ["browser", "page", "proc"]  # the dashboard's fixtures, shared


def test_a_key_is_shown_with_its_limits_and_paused_and_resumed_with_its_button(
    page: Page, client: httpx.Client, fresh_target: Target
) -> None:
    assert client.put("/keys/report/eu", json={"parallelism": 3, "rate": 10}).status_code == 200
    row = page.locator('#keys tr[data-key="report/eu"]')
    expect(row).to_contain_text("3")
    expect(row).to_contain_text("10 / 1 s")
    row.locator("button.pause").click()
    expect(row).to_contain_text("paused")
    assert client.get("/keys/report/eu").json()["paused"] is True
    job_id = accepted(client, method="GET", name=fresh_target.url("/echo"), key="report/eu")["id"]
    expect(row.locator("td").nth(1)).to_have_text("1")  # one job waiting
    shot(page, "keys")
    row.locator("button.resume").click()
    assert result(client, job_id)["status"] == "succeeded"
    expect(row.locator("button.pause")).to_be_visible()


def test_the_whole_deployment_is_paused_and_resumed_from_the_page(
    page: Page, client: httpx.Client, fresh_target: Target
) -> None:
    page.click("#pause-all")
    expect(page.locator("#paused-all")).to_be_visible()
    assert client.get("/sys_info").json()["paused"] is True
    job_id = accepted(client, method="GET", name=fresh_target.url("/echo"))["id"]
    assert state(client, job_id)["status"] == "queued"
    page.click("#resume-all")
    expect(page.locator("#paused-all")).to_be_hidden()
    assert result(client, job_id)["status"] == "succeeded"
