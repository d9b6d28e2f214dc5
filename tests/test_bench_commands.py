"""The bench/ commands: each one's command line parses (`--help`, nothing run), and the options
and the work directory they share come from `bench/_cli.py`."""
from __future__ import annotations

import io
import os
import runpy
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
COMMANDS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def _help(name: str, monkeypatch) -> str:
    """`python bench/<name> --help`, in this process, with sys.path, sys.modules and the
    environment restored."""
    monkeypatch.setattr(sys, "argv", [str(BENCH / name), "--help"])
    monkeypatch.setattr(sys, "path", [str(BENCH), *sys.path])
    before, environment = set(sys.modules), dict(os.environ)
    out = io.StringIO()
    try:
        with redirect_stdout(out), pytest.raises(SystemExit) as exited:
            runpy.run_path(str(BENCH / name), run_name="__main__")
    finally:
        for module in set(sys.modules) - before:
            if module == "_cli" or module.endswith("_bench") or module.endswith("_profile"):
                del sys.modules[module]
        os.environ.clear()
        os.environ.update(environment)
    assert exited.value.code == 0, name
    return out.getvalue()


@pytest.fixture(scope="module")
def cli():
    sys.path.insert(0, str(BENCH))
    try:
        import _cli
    finally:
        sys.path.remove(str(BENCH))
    return _cli


@pytest.mark.parametrize("name", COMMANDS)
def test_each_bench_command_line_parses_its_help(name, monkeypatch):
    assert _help(name, monkeypatch).startswith(f"usage: {name} ")


@pytest.mark.parametrize("name", ["op_profile.py", "parity_bench.py", "step_profile.py"])
def test_the_trainer_benches_share_config_batch_size_and_threads(name, monkeypatch):
    text = " ".join(_help(name, monkeypatch).split())
    assert "--config {parity,small128}" in text and "--batch-size BATCH_SIZE" in text
    threads = "--intra INTRA tf.config.threading intra-op threads (0: TF's default)"
    assert (threads in text) == (name != "parity_bench.py")


def test_a_work_directory_is_removed_unless_kept_and_a_report_says_where_it_went(cli, capsys):
    work = cli.work_directory("boxwise-bench-test-")
    (work / "scene.png").write_bytes(b"x")
    written = cli.write_report(work / "out" / "report.json", {"path": work, "steps": 3}, default=str)
    assert written.read_text() == '{\n  "path": "' + str(work) + '",\n  "steps": 3\n}\n'
    cli.remove_work_directory(work, keep=True)
    assert work.is_dir()
    cli.remove_work_directory(work, keep=False)
    assert not work.exists()
    assert capsys.readouterr().out == f"written to {written}\nwork directory kept: {work}\n"


def test_parity_bench_runs_the_od_api_at_the_thread_counts_given(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "path", [str(BENCH), *sys.path])
    import parity_bench
    try:
        seen = {}

        def fake_run(cmd, log_path, env=None, cwd=None):
            seen.update(env)
            log_path.write_text("I1201 10:11:01.980563 1 model_lib_v2.py:694] Step 100 per-step time 0.300s\n"
                                "I1201 10:11:21.980563 1 model_lib_v2.py:694] Step 200 per-step time 0.200s\n")
            return {"wall_seconds": 40.0, "load": {}, "cpu_samples": []}
        monkeypatch.setattr(parity_bench, "run", fake_run)
        info = parity_bench.odapi_train(tmp_path / "python", tmp_path / "c.config", tmp_path / "m", 200,
                                        tmp_path / "log", threads=(1, 2))
        assert (seen["TF_NUM_INTRAOP_THREADS"], seen["TF_NUM_INTEROP_THREADS"]) == ("1", "2")
        assert info["seconds_per_step"] == 0.2  # the first 100-step line (tracing) left out
        for bad in ("1", "a,b", "0,2", "1,2,3"):
            with pytest.raises(SystemExit) as refused:
                parity_bench.main(["--odapi-threads", bad])
            assert refused.value.code == 2
            assert f"--odapi-threads {bad!r}: two positive numbers, INTRA,INTER" in capsys.readouterr().err
    finally:
        for module in ("parity_bench", "_cli"):
            sys.modules.pop(module, None)
