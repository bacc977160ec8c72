"""The bench's worker processes (`--jobs`) do not outlive the bench that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# The bench's own set-up, smallest form: a spawn-context manager and pool started with the bench's
# initializer, one task that reports its pid and the manager's and runs far longer than the test waits.
BENCH_LIKE = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.managers import SyncManager
    from edgesync_bench.runner import exit_with_parent

    def strategy(path, manager_pid):
        with open(path, "w") as f:
            f.write(f"{os.getpid()} {manager_pid}")
        time.sleep(120)

    if __name__ == "__main__":
        context = multiprocessing.get_context("spawn")
        manager = SyncManager(ctx=context)
        manager.start(exit_with_parent)
        pool = ProcessPoolExecutor(1, mp_context=context, initializer=exit_with_parent)
        pool.submit(strategy, sys.argv[1], manager._process.pid)
        time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # an orphan that exited waits as a zombie until init reaps it


def test_the_strategy_and_manager_processes_end_when_their_bench_is_killed(tmp_path: Path) -> None:
    script, pid_file = tmp_path / "bench_like.py", tmp_path / "children.pid"
    script.write_text(BENCH_LIKE)
    bench = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=Path(__file__).parents[2])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 180  # a spawned child imports torch: a minute on a loaded 2-core machine
        while not (pid_file.exists() and pid_file.read_text()):
            assert bench.poll() is None, "the bench-like process died before its strategy started"
            assert time.monotonic() < deadline, "the strategy process never started"
            time.sleep(0.1)
        children = [int(pid) for pid in pid_file.read_text().split()]
        assert all(_alive(pid) for pid in children)
        bench.send_signal(signal.SIGKILL)  # no handler, no pool shutdown: the worst case
        bench.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in children if _alive(pid)]
        assert not survivors, f"{survivors} of {children} (strategy, manager) outlived their bench"
    finally:
        bench.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
