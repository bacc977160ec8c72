"""The bench's worker processes (`--jobs`) do not outlive the bench that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# The bench's own set-up, smallest form: a spawn-context pool whose initializer is the bench's,
# one task that reports its pid and then runs far longer than the test waits.
BENCH_LIKE = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from edgesync_bench.runner import exit_with_parent

    def strategy(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=exit_with_parent, initargs=(0.1,))
        pool.submit(strategy, sys.argv[1])
        time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # an orphan that exited waits as a zombie until init reaps it


def test_a_strategy_process_ends_when_its_bench_is_killed(tmp_path: Path) -> None:
    script, pid_file = tmp_path / "bench_like.py", tmp_path / "child.pid"
    script.write_text(BENCH_LIKE)
    bench = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert bench.poll() is None, "the bench-like process died before its strategy started"
            assert time.monotonic() < deadline, "the strategy process never started"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert _alive(child)
        bench.send_signal(signal.SIGKILL)  # no handler, no pool shutdown: the worst case
        bench.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"strategy process {child} outlived its bench"
    finally:
        bench.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
