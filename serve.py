"""Start the dashboard: `python serve.py [streamlit run options]`, what `make run` does.

The same as `streamlit run app.py`, except that Streamlit's legacy multipage mode is switched
off before the first visitor. Otherwise Streamlit treats the `pages/` folder beside app.py as
a legacy multipage app until the first `st.navigation` call of the process, and browsers that
connect in that window briefly get its sidebar of every page file (see
`pages/common.leave_legacy_pages_mode`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parent / "app.py"

if __name__ == "__main__":
    # PagesManager decides the mode once per process, when this class attribute is still None.
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())
