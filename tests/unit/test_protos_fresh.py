"""The committed protobuf code matches protos/: regenerate with `python scripts/gen_protos.py`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_generated_protobuf_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"edgesync/v1 is stale against protos/; run `python scripts/gen_protos.py`.\n{result.stderr}"
    )


def test_check_fails_and_names_the_file_when_generated_code_is_stale(tmp_path: Path) -> None:
    # A copy of the repository's proto pieces, so the real tree is never touched.
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copytree(ROOT / "edgesync" / "v1", tmp_path / "edgesync" / "v1")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gen_protos.py", tmp_path / "scripts" / "gen_protos.py")
    stale = tmp_path / "edgesync" / "v1" / "edgesync_pb2.py"
    stale.write_text(stale.read_text() + "\n# hand edit\n")
    before = stale.read_bytes()

    result = subprocess.run(
        [sys.executable, str(tmp_path / "scripts" / "gen_protos.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "edgesync_pb2.py" in result.stderr
    assert stale.read_bytes() == before  # --check reports, it does not rewrite
