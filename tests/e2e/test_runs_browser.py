"""The Runs page in a real browser follows a run without a reload: when it ends, the run table
says so too (not only the live view), and a run resumed from the page is followed again.
The stand-in trainer of tests/helpers.py runs as a configured external runner (admins only)."""
from __future__ import annotations

import pytest

from backend import run_lifecycle
from tests.e2e.browser import TIMEOUT_MS, playwright_api, signed_in_page, wait_idle

pytestmark = pytest.mark.e2e
expect = playwright_api.expect


@pytest.fixture
def running(db, users, project, setup, stand_in):
    """A training run of the stand-in, long enough to be running while the page watches it."""
    run = run_lifecycle.start_run(db, users["admin"], project["id"], export_id=setup["export_id"],
                         config_id=setup["config_id"], runner=stand_in,
                         num_train_steps=100_000)
    yield run
    # Whoever started it last (this process or the app), it must not outlive the test.
    if run_lifecycle.get_run(db, run["id"])["status"] in run_lifecycle.ACTIVE:
        run_lifecycle.cancel_run(db, users["admin"], run["id"])
        run_lifecycle.wait_for_run(db, run["id"], timeout=60)


@pytest.fixture
def app_url(running, app_server):
    return app_server


def run_table_status(page):
    """The status cell of the first row of the run table (the grid's accessible table)."""
    return page.locator("[data-testid=stDataFrame]").first.locator("table tbody tr").first \
        .locator("td").nth(1)


def test_run_table_follows_the_run_without_a_reload(db, users, running, app_url, browser):
    page = signed_in_page(browser, app_url, "admin", "Runs")
    page.get_by_text(f"Run #{running['id']}: running").wait_for()
    wait_idle(page)
    expect(run_table_status(page)).to_have_text("running")
    # The step column follows the run (it stayed at the step the page opened with).
    step_cell = run_table_status(page).locator("xpath=following-sibling::td[1]")
    first = step_cell.inner_text()
    expect(step_cell).not_to_have_text(first, timeout=TIMEOUT_MS)

    # The run ends while the page is open: the live view and the run table both show it.
    run_lifecycle.cancel_run(db, users["admin"], running["id"])
    assert run_lifecycle.wait_for_run(db, running["id"], timeout=60)["status"] == "cancelled"
    page.get_by_text(f"Run #{running['id']}: cancelled").wait_for()
    expect(run_table_status(page)).to_have_text("cancelled", timeout=TIMEOUT_MS)

    # Resumed from the page: the table shows it running, and the page follows it again.
    page.get_by_role("button", name="Resume").click()
    expect(run_table_status(page)).to_have_text("running", timeout=TIMEOUT_MS)
    run_lifecycle.cancel_run(db, users["admin"], running["id"])
    expect(run_table_status(page)).to_have_text("cancelled", timeout=TIMEOUT_MS)
    page.get_by_text(f"Run #{running['id']}: cancelled").wait_for()
