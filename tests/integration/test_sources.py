"""Video sources on real footage: files, a network stream served on loopback, and bad inputs."""

from __future__ import annotations

import functools
import http.server
import threading
import time
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


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "video-reader" and t.is_alive()]


def test_reading_ahead_yields_the_frames_the_loop_would_decode(clip: Path, tmp_path: Path) -> None:
    schedule_path = tmp_path / "s.yaml"
    schedule_path.write_text(
        "loop: true\nsegments:\n  - {until_s: 2, condition: clean}\n  - {until_s: 4, condition: fog}\n"
    )
    schedule = load_schedule(schedule_path)
    inline = list(VideoSource(str(clip), schedule, realtime=False, read_ahead=0))
    ahead = list(VideoSource(str(clip), schedule, realtime=False, read_ahead=2))
    assert len(ahead) == len(inline) == 40
    for a, b in zip(ahead, inline, strict=True):
        assert (a.index, a.video_index, a.t_s, a.condition) == (b.index, b.video_index, b.t_s, b.condition)
        assert (a.image == b.image).all()
    assert not _readers()


def test_a_reader_error_is_raised_in_the_loop(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 100)
    for read_ahead in (0, 2):
        with pytest.raises(SourceError, match="garbage.avi"):
            list(VideoSource(str(garbage), read_ahead=read_ahead))
    assert not _readers()
    with pytest.raises(ValueError, match="read_ahead"):
        VideoSource(str(garbage), read_ahead=-1)


def test_closing_a_source_mid_stream_ends_its_reader(clip: Path) -> None:
    source = VideoSource(str(clip), realtime=False, loop=True, read_ahead=3)
    frames = iter(source)
    first = [next(frames) for _ in range(3)]
    assert [f.index for f in first] == [0, 1, 2] and len(_readers()) == 1
    started = time.monotonic()
    source.close()  # the reader is blocked on a full queue: it stops there
    assert time.monotonic() - started < 2.0
    assert not _readers()
    again = VideoSource(str(clip), realtime=False, max_frames=5)
    assert [f.index for f in again] == [0, 1, 2, 3, 4]  # a fresh source reads from the start
    again.close()


def test_reading_ahead_keeps_file_pacing(clip: Path) -> None:
    started = time.monotonic()
    frames = list(VideoSource(str(clip), realtime=True, max_frames=10, fps=20.0))
    assert len(frames) == 10
    assert time.monotonic() - started >= 9 / 20.0 - 0.01  # the 10th frame is due 0.45 s in


def test_iterating_a_source_again_ends_the_earlier_reader_and_only_that_one(clip: Path) -> None:
    source = VideoSource(str(clip), realtime=False, loop=True)
    first = iter(source)
    next(first)
    second = iter(source)
    assert [next(second).index for _ in range(3)] == [0, 1, 2]  # the earlier reader ended first
    assert len(_readers()) == 1
    first.close()  # the first loop's clean-up leaves the second's reader alone
    assert next(second).index == 3 and len(_readers()) == 1
    source.close()
    assert not _readers()
