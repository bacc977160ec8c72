"""Video sources on real footage: files, a network stream served on loopback, and bad inputs."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from edge_agent.source import VideoSource, is_live
from edgesync.assets import vtest_path
from edgesync.drift import load_schedule
from edgesync.errors import SourceError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 frames of vtest.avi as a small MJPG file."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    capture = cv2.VideoCapture(str(vtest_path()))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(30):
        ok, frame = capture.read()
        assert ok
        writer.write(frame)
    writer.release()
    capture.release()
    return path


@pytest.fixture
def http_url(clip: Path) -> Iterator[str]:
    """The clip served over HTTP on 127.0.0.1: a stand-in for an IP camera's HTTP stream."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
    finally:
        server.shutdown()


def test_a_network_stream_url_is_read_as_a_live_source(http_url: str) -> None:
    source = VideoSource(http_url, max_frames=20)
    frames = list(source)
    assert is_live(http_url) and len(frames) == 20
    assert frames[0].image.shape == (576, 768, 3)
    assert all(b.t_s >= a.t_s for a, b in zip(frames, frames[1:], strict=False))


def test_a_file_loops_under_a_schedule_and_reports_its_position(clip: Path, tmp_path: Path) -> None:
    schedule_path = tmp_path / "s.yaml"
    schedule_path.write_text(
        "loop: true\nsegments:\n  - {until_s: 2, condition: clean}\n  - {until_s: 5, condition: night}\n"
    )
    frames = list(VideoSource(str(clip), load_schedule(schedule_path), realtime=False))
    assert len(frames) == 50  # 5 s at 10 fps over a 3 s clip: it looped
    assert [f.video_index for f in frames[28:33]] == [28, 29, 0, 1, 2]
    assert frames[10].condition == "clean" and frames[30].condition == "night"
    assert frames[30].image.mean() < frames[0].image.mean()


def test_sources_that_cannot_be_opened_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="missing.avi"):
        VideoSource(str(tmp_path / "missing.avi"))
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(SourceError, match="garbage.avi"):
        list(VideoSource(str(garbage)))
    with pytest.raises(SourceError, match="99"):
        VideoSource("99")  # no such camera
