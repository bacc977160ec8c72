"""`edgesync bench edge` on real footage with a tiny real student: the numbers are there and sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgesync.cli import app
from edgesync.errors import InvalidInput
from edgesync.student import StudentModel
from edgesync_bench import edge_loop
from edgesync_bench.edge_loop import run_edge_bench

pytestmark = pytest.mark.integration

FRAMES = 60
SWAPS = 2
IMGSZ = 64


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-edge")
    run_edge_bench("vtest.avi", frames=FRAMES, swaps=SWAPS, imgsz=IMGSZ, repeats=1, out=out)
    return json.loads((out / "edge.json").read_text())


def test_edge_json_holds_fps_ratio_latencies_and_machine_info(result: dict) -> None:
    for key in ("agent_fps", "bare_fps", "ratio", "p50_ms_steady", "p99_ms_steady", "p50_ms_swap", "p99_ms_swap"):
        assert isinstance(result[key], float), key
    assert result["frames"] == FRAMES
    assert result["imgsz"] == IMGSZ
    assert result["machine"]["cpu_count"] >= 1
    assert result["machine"]["torch_threads"] >= 1


def test_agent_and_bare_loops_both_run_and_ratio_is_their_quotient(result: dict) -> None:
    assert result["agent_fps"] > 0 and result["bare_fps"] > 0
    assert result["ratio"] == pytest.approx(result["agent_fps"] / result["bare_fps"], rel=0.01)


def test_latency_percentiles_are_positive_and_ordered(result: dict) -> None:
    for kind in ("steady", "swap"):
        assert 0 < result[f"p50_ms_{kind}"] <= result[f"p99_ms_{kind}"] <= result[f"max_ms_{kind}"]


def test_every_requested_model_update_is_swapped_in(result: dict) -> None:
    assert result["swaps_requested"] == SWAPS
    assert result["swaps"] == SWAPS
    assert len(result["swap_frame_ms"]) == SWAPS
    assert all(n >= FRAMES for n in result["swap_pass_frames"])


@pytest.mark.parametrize("spares", [None, 0], ids=["default-spares", "no-spares"])
def test_updates_are_loaded_into_the_agents_spares_unless_it_keeps_none(
    monkeypatch: pytest.MonkeyPatch, spares: int | None
) -> None:
    loaded: list[int] = []
    load_weights = StudentModel.load_weights

    def spy(self: StudentModel, *args, **kwargs) -> bool:
        loaded.append(args[1].version)
        return load_weights(self, *args, **kwargs)

    monkeypatch.setattr(StudentModel, "load_weights", spy)
    result = run_edge_bench("vtest.avi", frames=20, swaps=2, imgsz=IMGSZ, repeats=1, spares=spares)
    assert result["swaps"] == 2
    assert result["spares"] == (2 if spares is None else 0)
    assert loaded == ([2, 3] if spares is None else [])


def test_a_safetensors_student_keeps_its_own_size_and_version(tmp_path: Path) -> None:
    student = StudentModel.fresh(["person", "car"], 96)
    data, _ = student.encode()
    (tmp_path / "weights.safetensors").write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps(student.manifest(data, version=7).to_json()))
    result = run_edge_bench(
        "vtest.avi", frames=20, swaps=1, student=tmp_path / "weights.safetensors", imgsz=IMGSZ, repeats=1
    )
    assert result["imgsz"] == 96
    assert result["swaps"] == 1


def test_a_student_that_levels_frames_does_so_in_the_agent_loop_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bare loop is ultralytics' predict on frames as they come; the agent's model levels each
    frame as its manifest says, so the ratio pays for it."""
    seen: list[tuple[str, str]] = []
    for name in ("_bare_pass", "_agent_pass"):
        real = getattr(edge_loop, name)
        monkeypatch.setattr(
            edge_loop,
            name,
            lambda video, model, *a, _real=real, _name=name, **kw: (
                seen.append((_name, model.preprocess)) or _real(video, model, *a, **kw)
            ),
        )
    student = StudentModel.fresh(["person", "car"], IMGSZ).with_preprocess("auto-levels")
    data, _ = student.encode()
    (tmp_path / "weights.safetensors").write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps(student.manifest(data).to_json()))
    result = edge_loop.run_edge_bench(
        "vtest.avi", frames=10, swaps=1, student=tmp_path / "weights.safetensors", repeats=1
    )
    assert result["preprocess"] == "auto-levels" and result["swaps"] == 1
    timed = seen[-3:]  # after the warm-up passes: bare, agent, agent with swaps
    assert timed == [("_bare_pass", "none"), ("_agent_pass", "auto-levels"), ("_agent_pass", "auto-levels")]


def test_an_unknown_preprocessing_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="sharpen"):
        run_edge_bench("vtest.avi", frames=5, imgsz=IMGSZ, preprocess="sharpen")


def test_nonpositive_frames_are_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="frames"):
        run_edge_bench("vtest.avi", frames=0)


def test_cli_bench_edge_prints_a_table_and_writes_edge_json(tmp_path: Path) -> None:
    args = ["bench", "edge", "--frames", "10", "--swaps", "1", "--imgsz", "64", "--repeats", "1", "--out", tmp_path]
    outcome = CliRunner().invoke(app, [str(a) for a in args])
    assert outcome.exit_code == 0, outcome.output
    assert "agent loop" in outcome.output
    assert json.loads((tmp_path / "edge.json").read_text())["frames"] == 10
