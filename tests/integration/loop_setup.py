"""A cloud and an edge for tests that run the whole loop: a tiny real YOLO, the real SSD teacher,
real gRPC on 127.0.0.1:0 and vtest.avi through the smoke drift schedule."""

from __future__ import annotations

from pathlib import Path

from cloud_trainer.registry import ModelRegistry
from edgesync.config import CloudConfig, EdgeConfig, parse_config
from edgesync.student import StudentModel

CLASSES = ["person", "car"]
IMGSZ = 96  # tiny, so training a round takes seconds on 2 cores


def register_base(data_dir: Path) -> None:
    student = StudentModel.fresh(CLASSES, IMGSZ)
    data, _ = student.encode()
    ModelRegistry(data_dir / "registry").register(None, data, student.manifest(data))


def cloud_config(data_dir: Path, **training) -> CloudConfig:
    return parse_config(
        CloudConfig,
        {
            "listen": "127.0.0.1:0",
            "api": {"listen": "127.0.0.1:0"},
            "data_dir": str(data_dir),
            "teacher": {"type": "ssd_mobilenet", "classes": CLASSES},
            "labelling": {"batch_size": 4, "max_wait_s": 0.2},
            "manager": {"min_new_samples": 6},
            # tolerance 1.0: accept any candidate, so the test sees a swap even when a 1-epoch
            # model is no better than the random base (the comparison itself is unit-tested);
            # nominal_batch 4: an optimizer step every batch, so one epoch changes the weights (a
            # model identical to the edge's is not sent)
            "training": {
                "epochs": 1,
                "imgsz": IMGSZ,
                "batch": 4,
                "nominal_batch": 4,
                "max_fresh": 10,
                "min_fresh": 4,
                "min_heldout": 2,
                "tolerance": 1.0,
                **training,
            },
            "workers": 1,
        },
    )


def edge_config(tmp_path: Path, port: int, **source) -> EdgeConfig:
    return parse_config(
        EdgeConfig,
        {
            "edge_id": "cam-e2e",
            "cloud": {"address": f"127.0.0.1:{port}", "heartbeat_s": 0.5, "retry": {"initial_s": 0.1, "max_s": 0.5}},
            "source": {"uri": "vtest.avi", "drift": "configs/drift/smoke.yaml", **source},
            "sampler": {"max_samples_per_s": 4, "max_bytes_per_s": 400_000, "window_s": 1.0},
            "queue": {"max_items": 4, "spill_dir": str(tmp_path / "spill")},
            "model_dir": str(tmp_path / "models"),
            "sink": str(tmp_path / "frames.jsonl"),
        },
    )
