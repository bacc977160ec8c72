"""`edgesync bench load`: several edges at once on loopback; every acknowledged sample is stored once."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesync.config import RedisStoreConfig
from edgesync_bench.load import run_load

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_edges_uploading_at_once_are_all_served_and_counted(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = None
    if backend == "redis":
        store = RedisStoreConfig(
            url=request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    figures = run_load(edges=4, seconds=3.0, store=store, data_dir=tmp_path / "cloud", rate=10.0)
    assert figures["errors"] == []
    assert figures["samples_accepted"] == figures["samples_stored"] > 0  # acknowledged means stored, once
    assert figures["per_edge_accepted_min"] > 0  # no edge starved
    assert 0 < figures["ack_latency_ms_median"] <= figures["ack_latency_ms_p99"]
    assert figures["samples_per_s"] <= 4 * 10.0 * 1.2  # paced at 10/s per edge
