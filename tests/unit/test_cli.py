"""The `edgesync` command: every --help explains itself; bad config is one clear line, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from edgesync.cli import app

ROOT = Path(__file__).resolve().parents[2]


def command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group under the app, with the words that reach it."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*path, name))


COMMANDS = dict(command_paths(typer.main.get_command(app)))


def flat(text: str) -> str:
    """Help text without rich's panel borders and line wrapping."""
    return " ".join(text.replace("│", " ").split())


def test_the_app_has_the_documented_commands() -> None:
    assert {" ".join(p) for p in COMMANDS} >= {"", "edge", "edge run", "cloud", "cloud serve", "bootstrap", "demo"}


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "edgesync")
def test_help_of_every_command_exits_0_and_explains_it(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "Usage:" in text
    assert command.help, f"{' '.join(path) or 'edgesync'} has no help text"
    assert flat(command.help) in text
    for param in command.params:
        assert getattr(param, "help", None), f"option {param.name} of {' '.join(path)} has no help"
        assert flat(param.help) in text
    for name in getattr(command, "commands", {}):
        assert name in text  # a group lists its subcommands


# ---------------------------------------------------------------- errors as one line


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COLUMNS": "80",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for key in [k for k in env if k.startswith(("EDGESYNC_EDGE__", "EDGESYNC_CLOUD__"))]:
        del env[key]
    return subprocess.run(
        [sys.executable, "-m", "edgesync.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_edge_run_with_a_missing_config_is_one_line_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "a-directory-with-a-long-name-so-the-message-is-wider-than-80" / "missing.yaml"
    result = run_cli("edge", "run", "--config", str(missing), cwd=tmp_path)
    assert_one_line_error(result, str(missing))


def test_edge_run_with_a_misspelt_key_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("edge_id: cam-1\ncloud:\n  adress: 127.0.0.1:50051\n")
    result = run_cli("edge", "run", "--config", str(config), cwd=tmp_path)
    assert_one_line_error(result, str(config), "cloud.adress")


def test_cloud_serve_with_a_misspelt_key_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "cloud.yaml"
    config.write_text("training:\n  epocs: 3\n")
    result = run_cli("cloud", "serve", "--config", str(config), cwd=tmp_path)
    assert_one_line_error(result, str(config), "training.epocs")


def test_cloud_worker_on_the_in_process_store_is_one_line_pointing_at_redis(tmp_path: Path) -> None:
    config = tmp_path / "cloud.yaml"
    config.write_text("store:\n  type: memory\n")
    result = run_cli("cloud", "worker", "--config", str(config), cwd=tmp_path)
    assert_one_line_error(result, str(config), "store.type: redis", "cloud-redis.yaml")


def test_error_text_is_printed_literally_not_as_markup(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text('edge_id: "[/bold]cam"\n')
    result = run_cli("edge", "run", "--config", str(config), cwd=tmp_path)
    assert_one_line_error(result, str(config), "edge_id", "'[/bold]cam'")
