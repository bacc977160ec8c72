"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against a
running cloud with a real edge streaming vtest.avi; also both /metrics endpoints.

The screenshot is kept as a test artefact: $EDGESYNC_ARTIFACTS (default runs/test-artifacts)/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from loop_setup import cloud_config, edge_config, register_base

from cloud_trainer.app import CloudTrainer
from edge_agent.agent import EdgeAgent

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("EDGESYNC_CHROMIUM", "/usr/bin/chromium")
# flags for a closed network: without them chromium keeps reaching for Google's services
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("EDGESYNC_ARTIFACTS", "runs/test-artifacts"))


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(
            f"no chromium at {CHROMIUM}: run `make browser` (installs Debian's chromium) or set EDGESYNC_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def test_dashboard_shows_the_fleet_a_running_edge_and_its_history(tmp_path: Path, browser) -> None:
    register_base(tmp_path / "cloud")
    cloud = CloudTrainer(cloud_config(tmp_path / "cloud"))
    port = cloud.start()
    cfg = edge_config(tmp_path, port, realtime=True, fps=20, max_frames=640).model_copy(
        update={"edge_id": "cam-ui", "metrics_listen": "127.0.0.1:0"}
    )
    agent = EdgeAgent(cfg)
    edge = threading.Thread(target=agent.run, kwargs={"model_wait_s": 60, "drain_s": 2}, daemon=True)
    edge.start()
    try:
        # what a person waits for before looking: an accuracy point, a change point, a new model
        store = cloud.store
        _wait(lambda: store.list_events("cam-ui", "accuracy"), 90, "the first labelled batch")
        _wait(lambda: store.list_events("cam-ui", "scene_change"), 90, "the fog change point (about 26 s in)")
        _wait(lambda: store.list_events("cam-ui", "model_deployed"), 120, "a retrained model running on the edge")

        edge_metrics = _get(f"http://127.0.0.1:{agent.metrics.port}/metrics")
        for series in ("edgesync_edge_frames_total", "edgesync_edge_inference_latency_seconds_bucket",
                       "edgesync_edge_samples_accepted_total", "edgesync_edge_upload_bytes_total",
                       "edgesync_edge_model_version", "edgesync_edge_update_delay_seconds_count"):  # fmt: skip
            assert f'{series}{{edge="cam-ui"' in edge_metrics, series
        cloud_metrics = _get(f"http://127.0.0.1:{cloud.api_port}/metrics")
        assert 'edgesync_edge_up{edge="cam-ui"} 1.0' in cloud_metrics
        assert "edgesync_training_job_duration_seconds_count" in cloud_metrics

        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(cloud.dashboard_url())
        card = page.locator('.edge[data-edge="cam-ui"]')
        card.wait_for(timeout=15_000)
        assert card.locator(".pill").inner_text().lower() == "online"
        assert card.locator('[data-field="live-map50"]').inner_text() != "–"
        assert "token=" not in page.url  # moved out of the address bar into the tab's storage

        # attached, not visible: the tiny test model scores 0, a flat line with no height
        page.locator('#chart-accuracy path[data-series="live-map50"]').wait_for(state="attached", timeout=10_000)
        assert page.locator('#chart-accuracy line[data-marker="scene"]').count() >= 1
        assert page.locator('#chart-accuracy line[data-marker="model"]').count() >= 1
        page.locator("#samples img").first.wait_for(timeout=10_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#samples img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator("#jobs tbody tr").count() >= 1
        assert page.locator("#lineage .model.running").count() == 1

        page.get_by_role("button", name="Pause training").click()
        card.locator(".pill", has_text="paused").wait_for(timeout=10_000)
        assert store.get_meta("cam-ui")["paused"] == 1.0
        page.get_by_role("button", name="Resume training").click()
        card.locator(".pill", has_text="online").wait_for(timeout=10_000)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # a wrong token sends the page back to the token form instead of showing stale data
        other = browser.new_page()
        other.goto(f"http://127.0.0.1:{cloud.api_port}/#token=wrong")
        other.locator("#login-error").wait_for(timeout=10_000)
        assert "wrong token" in other.locator("#login-error").inner_text()
    finally:
        agent.stop()
        edge.join(timeout=30)
        cloud.stop()
