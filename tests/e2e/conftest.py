"""Fixtures for browser tests: the real app on a free port, and Debian's chromium."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.browser import ARGS, CHROMIUM, OPEN_PAGES, ROOT, free_port, playwright_api


@pytest.fixture
def app_server(data_dir):
    """The real app as `make run` starts it (`serve.py`) on a free port over `data_dir`,
    always stopped afterwards. Prepare the data through backend functions before asking for it."""
    yield from _serve(data_dir, ["serve.py"])


@pytest.fixture
def plain_app_server(data_dir):
    """The app started the other way people start Streamlit apps: `streamlit run app.py`."""
    yield from _serve(data_dir, ["-m", "streamlit", "run", "app.py"])


def _serve(data_dir, command: list[str]):
    port = free_port()
    log = open(data_dir / "streamlit.log", "wb")
    process = subprocess.Popen(
        [sys.executable, *command, "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env={**os.environ, "BOXWISE_DATA": str(data_dir)}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start:\n" +
                                   (data_dir / "streamlit.log").read_text(errors="replace"))
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def browser(data_dir):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: `make chromium` installs Debian's chromium")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            # Screenshots of every page left open, for reading a failure (in the test's tmp dir).
            for number, context in enumerate(OPEN_PAGES):
                for page in context.pages:
                    page.screenshot(path=str(data_dir / f"page{number}.png"), full_page=True)
            OPEN_PAGES.clear()
            launched.close()
