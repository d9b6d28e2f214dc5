"""From a zoo tarball to a run in a real browser: upload it on the Starting points page, see it
listed, fine-tune from it on a dataset version, and watch the run start with the trainer's
restore report naming what came from the zoo checkpoint."""
from __future__ import annotations

import pytest

from backend import dataset_versions, demo, run_lifecycle
from tests.e2e.browser import OPEN_PAGES, TIMEOUT_MS, playwright_api, wait_idle
from tests.helpers import ZOO_NAME as NAME, zoo_tarball

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
expect = playwright_api.expect


@pytest.fixture
def shapes(db, admin):
    """The demo project with a TFRecord dataset version of its labeled images."""
    project = demo.create_demo_project(db, admin, count=16)
    dataset_versions.create_export(db, admin, project["id"], "tfrecord", seed=1)
    return project


def test_upload_a_zoo_tarball_and_fine_tune_from_it(db, users, shapes, app_server, browser, tmp_path):
    tarball = zoo_tarball(tmp_path / f"{NAME}.tar.gz")
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    OPEN_PAGES.append(context)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(app_server)
    page.get_by_role("textbox", name="User name").fill("reviewer")
    page.get_by_role("textbox", name="Password", exact=True).fill("reviewer-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Signed in as reviewer").wait_for()
    page.get_by_role("link", name="Starting points").click()
    page.get_by_text("No starting points yet").wait_for()

    page.locator("[data-testid=stFileUploaderDropzoneInput]").first.set_input_files(str(tarball))
    page.get_by_role("button", name="Import").first.click()
    page.get_by_text(f"Imported {NAME}").wait_for(timeout=180_000)
    grid = page.locator("[data-testid=stDataFrame]").first
    expect(grid).to_contain_text(NAME)
    expect(grid).to_contain_text("128×128")

    page.get_by_role("tab", name="Fine-tune from it").click()
    page.get_by_role("button", name="Save the config and start the run").click()
    page.get_by_text("Training runs of demo-shapes").wait_for()
    run = run_lifecycle.list_runs(db, shapes["id"])[0]
    assert run["fine_tune_checkpoint"].endswith(f"{NAME}/checkpoint/ckpt-0")
    # The trainer's own report, written before its first step, shown on the page.
    page.get_by_text("Started from: detection restore from").wait_for(timeout=240_000)
    expect(page.get_by_text("Started from: detection restore from")).to_contain_text("backbone")
    wait_idle(page)
    run_lifecycle.cancel_run(db, users["admin"], run["id"])
    run_lifecycle.wait_for_run(db, run["id"], timeout=120)
