"""The Configs page's Doctor panel in a real browser, as a new user meets it: the zoo recipe at
128 px on a dataset of 14–44 px objects is flagged with the share of boxes no anchor matches;
one click on "Fix it" puts the suggested anchor_scale into the config's diff, the panel
re-checks it; batch norm's decay 0.997, which leaves 9 % of the moving statistics at their start
after the run's 800 steps, is flagged too and its "Fix it" puts decay 0.994 into the diff;
saving stores both as the config's next version."""
from __future__ import annotations

import pytest

from backend import saved_configs
from tests.e2e.browser import playwright_api, signed_in_page, wait_idle
from tests.helpers import ZOO_128, shapes_version

pytestmark = pytest.mark.e2e
expect = playwright_api.expect


@pytest.fixture
def zoo_saved(db, users):
    version = shapes_version(db, users["admin"], "small-shapes")
    text = saved_configs.fill_from_dataset_version(ZOO_128.read_text(), version)
    return saved_configs.save_config(db, users["reviewer"], version.project_id, "zoo", text)


def test_fix_it_applies_the_suggested_anchor_scale_and_decay_and_saves_a_new_version(db, users, zoo_saved, app_server,
                                                                                      browser, data_dir):
    page = signed_in_page(browser, app_server, "reviewer", "Configs")
    page.get_by_text("23 of 82 boxes (28.0%) have no anchor with IoU ≥ 0.5").wait_for()
    wait_idle(page)
    expect(page.locator("[data-testid=stVegaLiteChart]")).to_have_count(2)
    page.screenshot(path=str(data_dir / "doctor-before.png"), full_page=True)

    batch_norm = "batch_norm decay 0.997 over the run's 800 steps leaves 9% of the moving mean and variance"
    expect(page.get_by_text(batch_norm)).to_have_count(1)
    fix_buttons = page.get_by_role("button", name="Fix it")
    expect(fix_buttons).to_have_count(3)  # schedule, batch norm, anchor coverage

    fix_buttons.nth(2).click()
    wait_idle(page)
    expect(page.get_by_text("have no anchor with IoU")).to_have_count(0)
    expect(page.locator("[data-testid=stCode]")).to_contain_text("+        anchor_scale: 2.25")
    page.get_by_role("button", name="Fix it").nth(1).click()
    wait_idle(page)
    expect(page.get_by_text(batch_norm)).to_have_count(0)
    expect(page.locator("[data-testid=stCode]")).to_contain_text("+          decay: 0.994")
    expect(page.locator("[data-testid=stCode]")).to_contain_text("+            decay: 0.994")
    expect(page.locator("[data-testid=stCode]")).to_contain_text("+        anchor_scale: 2.25")
    page.screenshot(path=str(data_dir / "doctor-after.png"), full_page=True)
    page.get_by_role("button", name="Save as a new version").click()
    wait_idle(page)
    saved = saved_configs.list_configs(db, zoo_saved["project_id"])[0]
    assert saved["version"] == 2 and "anchor_scale: 2.25" in saved["text"]
    assert saved["text"].count("decay: 0.994\n") == 2 and "decay: 0.997" not in saved["text"]
