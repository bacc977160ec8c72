"""`edgesync bench` mechanics on a 15 s clip of real footage, the real SSD teacher and a tiny real YOLO.

The clip is the first 150 frames of vtest.avi at 10 fps (clean 0-5 s, night 5-15 s). The
student has random weights, so every accuracy is ~0: these tests check what the benchmark
promises whatever the accuracy (schema, budgets, training happening, determinism), not how
good a strategy is.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
import torch

from cloud_trainer.bootstrap import BootstrapSettings
from cloud_trainer.registry import ModelRegistry
from edgesync.assets import vtest_path
from edgesync.config import CloudConfig, SamplerConfig, parse_config
from edgesync.errors import ConfigError
from edgesync.student import StudentModel
from edgesync_bench import strategies as registry
from edgesync_bench.runner import BOOTSTRAP_MAX_SHARE, BenchRequest, run_bench
from edgesync_bench.strategies import CountTrigger
from edgesync_bench.stream import EDGE_ID

pytestmark = pytest.mark.integration

CLIP_FRAMES = 150
CLIP_FPS = 10
STRATEGIES = ["static", "uniform", "shoggoth", "edgesync"]
SEGMENT_KEYS = {"map50_mean", "map50_by_segment", "update_delay_s_median", "updates", "uplink_bytes"}
STRATEGY_KEYS = SEGMENT_KEYS | {"downlink_bytes", "train_iterations", "frames"}
# Budgets: the random student's scores are all 0, so the adaptive (shoggoth) sampler runs at a
# quarter of the sample rate; 8 samples/s still brings it the 15 labelled samples a round needs,
# twice, and the byte budget (not the sample count) is what limits the uniform sampler.
MAX_SAMPLES_PER_S = 8.0
MAX_BYTES_PER_S = 200_000.0
TRAIN_BUDGET_SHARE = 0.6


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding clip.avi, drift.yaml and student/{weights.safetensors,manifest.json}."""
    root = tmp_path_factory.mktemp("bench-inputs")
    capture = cv2.VideoCapture(str(vtest_path()))
    writer = None
    for _ in range(CLIP_FRAMES):
        ok, frame = capture.read()
        assert ok, "vtest.avi ended early"
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, size)
        writer.write(frame)
    capture.release()
    assert writer is not None
    writer.release()
    (root / "drift.yaml").write_text(
        "segments:\n  - {until_s: 5, condition: clean}\n  - {until_s: 15, condition: night, strength: 0.5}\n"
    )
    torch.manual_seed(0)
    student = StudentModel.fresh(["person", "car"], 96)
    data, _ = student.encode()
    (root / "student").mkdir()
    (root / "student" / "weights.safetensors").write_bytes(data)
    (root / "student" / "manifest.json").write_text(json.dumps(student.manifest(data, version=1).to_json()))
    return root


def _bench(
    inputs: Path,
    out: Path,
    strategies: list[str],
    seed: int = 0,
    cameras: Path | None = None,
    jobs: int = 1,
    training: dict | None = None,
    resume: bool = False,
) -> dict:
    """Run the benchmark on the clip (or the cameras file's cameras) and return results.json as written."""
    # nominal_batch 4: an optimizer step every batch, so a one-epoch job changes the weights
    training = {"epochs": 1, "batch": 4, "nominal_batch": 4, "min_heldout": 2} | (training or {})
    cloud = parse_config(CloudConfig, {"training": training})
    run_bench(
        BenchRequest(
            video=str(inputs / "clip.avi"),
            drift=inputs / "drift.yaml",
            strategies=strategies,
            seed=seed,
            out=out,
            student=inputs / "student" / "weights.safetensors",
            cloud=cloud,
            max_samples_per_s=MAX_SAMPLES_PER_S,
            max_bytes_per_s=MAX_BYTES_PER_S,
            window_s=5,
            train_budget_share=TRAIN_BUDGET_SHARE,
            cache_dir=inputs / "cache",
            cameras=cameras,
            jobs=jobs,
            resume=resume,
        )
    )
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def out(inputs: Path) -> Path:
    return inputs / "out"


@pytest.fixture(scope="module")
def results(inputs: Path, out: Path) -> dict:
    return _bench(inputs, out, STRATEGIES)


def _budget_windows(duration_s: float) -> int:
    """Sampler windows it takes to cover the stream: the upload caps hold per sliding window."""
    return math.ceil(duration_s / SamplerConfig().window_s)


def test_results_json_has_the_documented_schema(results: dict, inputs: Path) -> None:
    assert results["video"] == str(inputs / "clip.avi")
    assert results["drift"] == str(inputs / "drift.yaml")
    assert results["seed"] == 0
    assert results["duration_s"] == 15
    assert results["gpu_speedup"] == 1.0
    assert re.fullmatch(r"[0-9a-f]{64}", results["student_sha256"]), "which student the strategies started from"
    assert list(results["strategies"]) == STRATEGIES
    for name, strategy in results["strategies"].items():
        assert STRATEGY_KEYS <= set(strategy), f"{name} lacks {STRATEGY_KEYS - set(strategy)}"
        assert set(strategy["map50_by_segment"]) == {"clean", "night"}
        assert set(strategy["map50_first30_by_segment"]) == {"clean", "night"}  # recovery after each change
        assert strategy["frames"] == CLIP_FRAMES
        assert 0 <= strategy["wall_s"] < results["wall_s"]
    assert 0 <= results["setup_wall_s"] < results["wall_s"]


def test_static_never_uploads_nor_updates(results: dict) -> None:
    static = results["strategies"]["static"]
    assert static["updates"] == 0
    assert static["uplink_bytes"] == 0
    assert static["downlink_bytes"] == 0
    assert static["train_iterations"] == 0


def test_no_strategy_uploads_more_bytes_than_the_budget(results: dict) -> None:
    window_s = SamplerConfig().window_s
    cap = MAX_BYTES_PER_S * window_s * _budget_windows(results["duration_s"])
    for name, strategy in results["strategies"].items():
        assert strategy["uplink_bytes"] <= cap, name
    # the uniform sampler runs into the byte cap here, so the check above can bite
    assert results["strategies"]["uniform"]["uplink_bytes"] > MAX_BYTES_PER_S * results["duration_s"] * 0.9


def test_no_strategy_uploads_more_samples_than_the_budget(results: dict) -> None:
    per_window = math.floor(MAX_SAMPLES_PER_S * SamplerConfig().window_s)
    cap = per_window * _budget_windows(results["duration_s"])
    for name, strategy in results["strategies"].items():
        assert strategy["samples_uploaded"] <= cap, name


def test_training_stays_within_the_gpu_budget(results: dict) -> None:
    budget = results["budgets"]["train_budget_gpu_s"]
    assert budget == pytest.approx(TRAIN_BUDGET_SHARE * results["duration_s"])
    for name, strategy in results["strategies"].items():
        assert strategy["train_gpu_s"] <= budget, name
        assert sum(j["finished"] - j["started"] for j in strategy["jobs"]) <= budget + 1e-6, name


def test_shoggoth_trains_and_its_models_reach_the_edge(results: dict) -> None:
    shoggoth = results["strategies"]["shoggoth"]
    assert len(shoggoth["jobs"]) >= 1
    assert all(job["epochs"] >= 1 for job in shoggoth["jobs"])
    assert shoggoth["train_iterations"] > 0
    assert shoggoth["train_gpu_s"] > 0
    assert shoggoth["updates"] >= 1
    assert shoggoth["downlink_bytes"] > 0
    assert all(0 < t <= results["duration_s"] for t in shoggoth["update_times_s"])


def _trained_models(out: Path, strategy: str) -> list[str]:
    """sha256 of every model version a strategy's run registered (the run's registry stays in out/work)."""
    return [m.sha256 for m in ModelRegistry(out / "work" / strategy / "registry").versions(EDGE_ID)]


def test_same_seed_gives_identical_results_and_bit_identical_models(results: dict, inputs: Path, out: Path) -> None:
    """Also when the strategies run side by side in worker processes (--jobs), with fewer threads each."""
    again_out = inputs / "again"
    again = _bench(inputs, again_out, ["static", "shoggoth"], jobs=2)
    assert again["jobs"] == 2
    for name in ("static", "shoggoth"):
        first, second = results["strategies"][name], again["strategies"][name]
        for key in ("map50_mean", "map50_by_segment", "updates", "uplink_bytes", "train_iterations", "update_times_s"):
            assert first[key] == second[key], f"{name}.{key}"
        assert [j["map50_after"] for j in first["jobs"]] == [j["map50_after"] for j in second["jobs"]], name
    trained = _trained_models(out, "shoggoth")
    assert len(trained) >= 2  # the base model and at least one trained version
    assert _trained_models(again_out, "shoggoth") == trained


def _machine_goes_down(*args) -> None:
    raise RuntimeError("the machine went down")


def test_a_bench_stopped_part_way_keeps_what_it_finished_and_resume_runs_only_the_rest(
    inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing = replace(registry.STRATEGIES["shoggoth"], name="crashing", trigger=_machine_goes_down)
    monkeypatch.setitem(registry.STRATEGIES, "crashing", crashing)
    monkeypatch.setitem(registry.STRATEGIES, "static-2", replace(registry.STRATEGIES["static"], name="static-2"))
    out = inputs / "resume"
    with pytest.raises(RuntimeError, match="went down"):
        _bench(inputs, out, ["static", "crashing"])
    stopped = json.loads((out / "results.json").read_text())
    assert list(stopped["strategies"]) == ["static"] and stopped["unfinished"] == ["crashing"]
    assert "| static |" in (out / "results.md").read_text()

    resumed = _bench(inputs, out, ["static", "static-2"], resume=True)
    assert resumed["reused"] == ["static"] and resumed["unfinished"] == []
    assert list(resumed["strategies"]) == ["static", "static-2"]
    assert resumed["strategies"]["static"] == stopped["strategies"]["static"]  # kept, wall time and all
    for key in ("map50_mean", "map50_by_segment", "frames"):  # the same student on the same stream
        assert resumed["strategies"]["static-2"][key] == resumed["strategies"]["static"][key], key

    with pytest.raises(ConfigError, match="seed"):  # another stream's numbers are never mixed in
        _bench(inputs, out, ["static"], seed=1, resume=True)
    with pytest.raises(RuntimeError, match="went down"):  # without --resume the directory starts over
        _bench(inputs, out, ["crashing"])
    again = json.loads((out / "results.json").read_text())
    assert again["strategies"] == {} and again["unfinished"] == ["crashing"] and again["reused"] == []


def test_downlink_is_charged_with_the_bytes_each_encoding_actually_sends(results: dict, inputs: Path) -> None:
    variants = _bench(inputs, inputs / "downlink", ["shoggoth+full:raw", "shoggoth+int8-delta@0.1"])["strategies"]
    raw, sparse = variants["shoggoth+full:raw"], variants["shoggoth+int8-delta@0.1"]
    default = results["strategies"]["shoggoth"]  # the config's downlink: fp16-delta, zstd
    full_size = (inputs / "student" / "weights.safetensors").stat().st_size
    assert raw["downlink"] == {"encoding": "full", "sparse_fraction": None, "compress": False}
    assert raw["updates"] >= 1 and raw["downlink_bytes_per_update_median"] == full_size
    assert default["downlink"]["encoding"] == "fp16-delta"
    assert default["downlink_bytes_per_update_median"] < full_size
    assert sparse["updates"] >= 1 and sparse["downlink_bytes_per_update_median"] < 0.25 * full_size
    for run in (raw, sparse, default):
        assert run["downlink_bytes_per_camera_hour"] == pytest.approx(
            run["downlink_bytes"] / results["duration_s"] * 3600
        )
        link = (run["uplink_bytes"] + run["downlink_bytes"]) * 8 / 1000 / results["duration_s"]
        assert run["link_kbit_s"] == pytest.approx(link)


def test_report_has_a_table_row_per_strategy_and_a_plot(results: dict, out: Path) -> None:
    table = (out / "results.md").read_text()
    for name in STRATEGIES:
        assert f"| {name} |" in table
    assert f"student {results['student_sha256'][:8]}" in table  # which student the rows are of
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bootstrapped_student_is_never_scored_on_its_training_frames_however_the_stream_loops(
    inputs: Path,
) -> None:
    # 30 s of a 15 s clip: the stream shows every frame twice; the first clean segment (5 s) is
    # longer than a quarter of the clip, so the bootstrap takes the first 3.75 s (37 frames)
    (inputs / "looping.yaml").write_text(
        "loop: true\nsegments:\n  - {until_s: 5, condition: clean}\n  - {until_s: 30, condition: night}\n"
    )
    out = inputs / "bootstrap-out"
    run_bench(
        BenchRequest(
            video=str(inputs / "clip.avi"),
            drift=inputs / "looping.yaml",
            strategies=["static"],
            seed=0,
            out=out,
            bootstrap=BootstrapSettings(frames=8, epochs=1, imgsz=96, val_every=4),
            cache_dir=inputs / "bootstrap-cache",
        )
    )
    results = json.loads((out / "results.json").read_text())
    span = int(CLIP_FRAMES / CLIP_FPS * BOOTSTRAP_MAX_SHARE * CLIP_FPS)
    assert results["bootstrap_video_frames"] == span == 37
    assert results["evaluated_from_s"] == 5.0  # and the whole first segment is a warm-up
    stream = round(30 * CLIP_FPS)
    scored = [i for i in range(stream) if i / CLIP_FPS >= 5.0 and i % CLIP_FRAMES >= span]
    assert results["strategies"]["static"]["frames"] == len(scored) == stream - 50 - span


def test_bench_changepoints_scores_the_detector_against_the_schedule(inputs: Path) -> None:
    from edgesync.config import ChangePointConfig
    from edgesync_bench.changepoints import ChangePointRequest, run_changepoints

    drift = inputs / "cuts.yaml"
    drift.write_text(
        "segments:\n  - {until_s: 8, condition: clean}\n  - {until_s: 15, condition: night, strength: 0.8}\n"
    )
    result = run_changepoints(
        ChangePointRequest(
            video=str(inputs / "clip.avi"),
            drift=drift,
            student=inputs / "student" / "weights.safetensors",
            out=inputs / "cp",
            detector=ChangePointConfig(warmup_s=3.0),
        )
    )
    written = json.loads((inputs / "cp" / "changepoints.json").read_text())
    assert written == result
    for key in ("precision", "recall", "f1", "delay_s_median", "false_alarms_per_10min"):
        assert key in written
    assert written["boundaries_s"] == [8.0]
    assert written["recall"] == 1.0 and 0 <= written["delay_s_median"] <= 5.0


def test_cameras_share_one_cloud_and_one_training_budget(inputs: Path) -> None:
    (inputs / "steady.yaml").write_text("segments:\n  - {until_s: 15, condition: clean}\n")
    (inputs / "cameras.yaml").write_text(
        "video: " + str(inputs / "clip.avi") + "\n"
        "train_budget_share: 0.6\n"
        "cameras:\n"
        "  - {edge_id: cam-a, drift: drift.yaml, seed: 1}\n"
        "  - {edge_id: cam-b, drift: steady.yaml, seed: 2, offset_s: 3}\n"
    )
    out = inputs / "cameras-out"
    results = _bench(inputs, out, ["fifo", "manager"], cameras=inputs / "cameras.yaml")
    assert [c["edge_id"] for c in results["cameras"]] == ["cam-a", "cam-b"]
    budget = results["budgets"]["train_budget_gpu_s"]
    assert budget == pytest.approx(0.6 * 15)  # the cameras file's share, for the one worker they share
    for name in ("fifo", "manager"):
        strategy = results["strategies"][name]
        per = strategy["per_camera"]
        assert set(per) == {"cam-a", "cam-b"}
        assert strategy["map50_mean"] == pytest.approx((per["cam-a"]["map50_mean"] + per["cam-b"]["map50_mean"]) / 2)
        assert set(per["cam-a"]["map50_by_segment"]) == {"clean", "night"}
        assert set(per["cam-b"]["map50_by_segment"]) == {"clean"}
        assert strategy["frames"] == 2 * CLIP_FRAMES
        assert strategy["train_gpu_s"] <= budget + 1e-6  # both cameras' jobs come out of one budget
        assert strategy["uplink_bytes"] == per["cam-a"]["uplink_bytes"] + per["cam-b"]["uplink_bytes"] > 0
    table = (out / "results.md").read_text()
    assert f"student {results['student_sha256'][:8]}" in table
    assert "cam-a" in table and "| fifo |" in table and (out / "accuracy.png").stat().st_size > 0


class UrgentOnB(CountTrigger):
    """Shoggoth's trigger, but cam-b's jobs rank three times cam-a's (the manager's pre-emption margin is 2x)."""

    @property
    def priority(self) -> float:
        return 3.0 if self.edge_id == "cam-b" else 1.0


def test_a_job_of_another_camera_pre_empts_at_an_epoch_boundary_and_the_first_resumes(
    inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cameras with the same drift queue jobs at about the same time; the worker's pre-emption
    check runs at each epoch boundary against the queue as it stands at that virtual time, so a
    running cam-a job yields to cam-b's, resumes from its checkpoint later, and the budget holds."""
    # pre-emption by rank (preempt_by "priority"), the pre-empted job pausing (not sent) to resume
    shoggoth = registry.STRATEGIES["shoggoth"]
    training = shoggoth.training | {"preempt_by": "priority", "preempt_delivers": False}
    ranked = replace(shoggoth, name="ranked", trigger=lambda *a: UrgentOnB(*a, every=15), training=training)
    monkeypatch.setitem(registry.STRATEGIES, "ranked", ranked)  # a strategy plug-in of the test's own
    (inputs / "twins.yaml").write_text(
        "video: " + str(inputs / "clip.avi") + "\n"
        "train_budget_share: 0.6\n"
        "cameras:\n"
        "  - {edge_id: cam-a, drift: drift.yaml, seed: 1}\n"
        "  - {edge_id: cam-b, drift: drift.yaml, seed: 2}\n"
    )
    results = _bench(inputs, inputs / "twins-out", ["ranked"], cameras=inputs / "twins.yaml")
    strategy = results["strategies"]["ranked"]
    jobs = {cam: run["jobs"] for cam, run in strategy["per_camera"].items()}
    yielded = [j for j in jobs["cam-a"] if j.get("preempted_by")]
    assert yielded, f"no cam-a job was pre-empted: {jobs}"
    assert not any(j.get("preempted_by") for j in jobs["cam-b"])  # a job worth less never pre-empts
    for first in yielded:
        assert first["version"] is None and first["epochs"] >= 1 and first["preempted_by"].startswith("cam-b")
        resumed = [j for j in jobs["cam-a"] if j["job_id"] == first["job_id"] and "resumed_from_epoch" in j]
        assert resumed and resumed[0]["resumed_from_epoch"] >= first["epochs"]  # from its checkpoint
        assert resumed[0]["started"] >= first["finished"]
    assert strategy["train_gpu_s"] <= results["budgets"]["train_budget_gpu_s"] + 1e-6
    again = _bench(inputs, inputs / "twins-again", ["ranked"], cameras=inputs / "twins.yaml")
    for cam, run in again["strategies"]["ranked"]["per_camera"].items():  # lock-step: same seed, same run
        wall = {"train_seconds"}
        assert [{k: v for k, v in j.items() if k not in wall} for j in run["jobs"]] == [
            {k: v for k, v in j.items() if k not in wall} for j in jobs[cam]
        ]
        assert run["map50_mean"] == strategy["per_camera"][cam]["map50_mean"]
