"""Server settings (runners, allowed folders) are set from the command line, never from a page."""
from __future__ import annotations

import json
import sys

import pytest

from backend import paths, server_settings
from backend.__main__ import main
from backend.errors import EXIT_INVALID


def test_command_line_adds_shows_and_removes_runners_and_allowed_folders(data_dir, tmp_path, users, capsys):
    script = tmp_path / "model_main_tf2.py"
    assert main(["settings", "runner-add", "tf215", "--python", sys.executable, "--script", str(script)]) == 0
    assert main(["settings", "allow", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["settings", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["runners"] == {"tf215": {"python": sys.executable, "script": str(script)}}
    assert shown["allowed_paths"] == [str(tmp_path.resolve())]
    assert paths.confine(tmp_path / "x.record", users["viewer"], "records") == (tmp_path / "x.record").resolve()
    assert main(["settings", "runner-remove", "tf215"]) == 0
    assert main(["settings", "disallow", str(tmp_path)]) == 0
    assert server_settings.runners() == {} and server_settings.allowed_paths() == []
    assert main(["settings", "runner-add", "x", "--python", "python3", "--script", str(script)]) == EXIT_INVALID
    assert "must be an absolute path" in capsys.readouterr().err


def test_no_page_writes_server_settings():
    from pathlib import Path
    pages = Path(__file__).resolve().parents[1] / "pages"
    sources = [p.read_text() for p in pages.glob("*.py")] + [(pages.parent / "app.py").read_text()]
    for call in ("set_runner", "remove_runner", "allow_path", "disallow_path"):
        assert not any(call in text for text in sources), call


def test_an_environment_runner_wins_and_bad_json_is_named(data_dir, monkeypatch):
    monkeypatch.setenv("BOXWISE_RUNNERS", json.dumps({"a": {"python": sys.executable, "script": "/opt/a.py"}}))
    assert server_settings.runner_names() == ["a"]
    monkeypatch.setenv("BOXWISE_RUNNERS", "{nope")
    with pytest.raises(server_settings.Invalid, match="BOXWISE_RUNNERS is not valid JSON"):
        server_settings.runners()
