"""The processes behind runs: the children this dashboard started, their limits (how many at once,
priority, threads, environment), whether a pid is still the process that was started, reaping
and signalling process groups. No database: `run_lifecycle` records what happens here.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from backend import settings
# Popen objects of the processes this dashboard started, so finished ones are reaped (no
# zombies) and their exit code is known. After a restart the table is empty: the pid and its
# start time in the row are then all there is, which is enough to tell alive from gone.
_children: dict[int, subprocess.Popen] = {}


def max_concurrent_runs() -> int:
    """How many runs may use the machine at once (`BOXWISE_MAX_RUNS`, default 1)."""
    return max(1, int(os.environ.get("BOXWISE_MAX_RUNS", "1")))


def trainer_niceness() -> int:
    """How much lower the CPU priority of trainers, evaluators and exporters is than the
    dashboard's (`BOXWISE_TRAIN_NICE`, default 10; 0 keeps the same priority)."""
    return max(0, min(19, int(os.environ.get("BOXWISE_TRAIN_NICE", "10"))))


def trainer_threads() -> int:
    """TensorFlow's intra-op and inter-op thread counts for launched processes
    (`BOXWISE_TRAIN_THREADS`, default: the logical CPUs but one, at least 1), so the dashboard
    keeps a core while a run goes on."""
    default = max(1, (os.cpu_count() or 1) - 1)
    return max(1, int(os.environ.get("BOXWISE_TRAIN_THREADS", str(default))))


def child_environment() -> dict[str, str]:
    """The environment a launched process runs with: the data folder, unbuffered output, and
    TensorFlow's thread limits (`trainer_threads`) unless already set."""
    threads = str(trainer_threads())
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
            "OMP_NUM_THREADS": threads, **os.environ,
            "BOXWISE_DATA": str(settings.data_dir()), "PYTHONUNBUFFERED": "1"}


def reap_children() -> list[int]:
    """Collect the exit status of every process this dashboard started that has ended (runs,
    evaluations, exports and batch predictions), so none stays a `<defunct>` zombie until a
    page happens to look at it. Returns the pids reaped now. Exit codes stay known (`Popen`
    keeps them) until the run is settled."""
    from backend import predictions
    reaped = []
    for table in (_children, predictions._children):
        for pid, child in list(table.items()):
            if child.returncode is None and child.poll() is not None:
                reaped.append(pid)
    return reaped


def cancel_grace_seconds() -> float:
    """How long a cancelled trainer gets to checkpoint before SIGKILL (`BOXWISE_CANCEL_GRACE`)."""
    return float(os.environ.get("BOXWISE_CANCEL_GRACE", "60"))


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of `pid` (clock ticks since boot, field 22 of /proc/<pid>/stat),
    or None when there is no such live process (gone, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    state, start = fields[0], fields[19]
    if state in ("Z", "X"):
        return None
    return float(start)


def process_alive(pid: int | None, start_time: float | None) -> bool:
    """True when `pid` is running and is the same process that was started (same start time)."""
    if not pid:
        return False
    if pid in _children:
        # Our own child: alive until it can be reaped. (A process killed while its threads are
        # still being torn down already shows as a zombie in /proc but has no exit code yet.)
        return _reap(pid) is None
    started = process_start_time(pid)
    return started is not None and (start_time is None or started == start_time)


def _reap(pid: int) -> int | None:
    """The exit code of a child of this process that has ended (reaping it), else None."""
    child = _children.get(pid)
    if child is None:
        return None
    return child.poll()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
